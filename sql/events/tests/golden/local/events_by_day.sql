SELECT
    e.event_id,
    e.user_id,
    e.event_type,
    e.event_ts,
    COALESCE(c.country_name, 'unknown') AS country,
    CAST(e.event_ts AS DATE) AS event_date
FROM events.clean_events AS e
LEFT JOIN raw.countries AS c
    ON e.country_code = c.country_code
WHERE CAST(e.event_ts AS DATE) = DATE '2024-01-01'
