WITH per_user AS (
    SELECT event_date, country, user_id, COUNT(*) AS events
    FROM {{ ref('events_by_day') }}
    WHERE {{ in_window('event_date', ds, var('lookback_days', 0)) }}
    GROUP BY event_date, country, user_id
)
SELECT
    event_date,
    country,
    COUNT(*) AS active_users,
    SUM(events) AS events
FROM per_user
WHERE events >= {{ var('min_events') }}
GROUP BY event_date, country
