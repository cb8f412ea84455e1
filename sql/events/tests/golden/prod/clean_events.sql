SELECT
    event_id,
    user_id,
    event_type,
    CAST(event_ts AS TIMESTAMP) AS event_ts,
    country_code
FROM raw.events
WHERE user_id IS NOT NULL
  AND user_id <> ''
  AND event_type NOT IN ('debug', 'heartbeat')
