WITH per_user AS (
    SELECT event_date, country, user_id, COUNT(*) AS events
    FROM events.events_by_day
    WHERE event_date = DATE '2024-01-01'
    GROUP BY event_date, country, user_id
)
SELECT
    event_date,
    country,
    COUNT(*) AS active_users,
    SUM(events) AS events
FROM per_user
WHERE events >= 2
GROUP BY event_date, country
