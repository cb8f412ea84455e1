SELECT
    event_id,
    user_id,
    event_type,
    CAST(event_ts AS TIMESTAMP) AS event_ts,
    country_code
FROM {{ source('raw', 'events') }}
WHERE user_id IS NOT NULL
  AND user_id <> ''
  AND event_type NOT IN {{ var('excluded_event_types') | sql_list }}
