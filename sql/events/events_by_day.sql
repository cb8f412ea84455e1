SELECT
    e.event_id,
    e.user_id,
    e.event_type,
    e.event_ts,
    COALESCE(c.country_name, 'unknown') AS country,
    CAST(e.event_ts AS DATE) AS event_date
FROM {{ ref('clean_events') }} AS e
LEFT JOIN {{ source('raw', 'countries') }} AS c
    ON e.country_code = c.country_code
WHERE {{ in_window('CAST(e.event_ts AS DATE)', ds, var('lookback_days', 0)) }}
