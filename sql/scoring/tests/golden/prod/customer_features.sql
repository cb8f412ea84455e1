-- Features in the order the model takes them (scripts/fixtures/models.py, FEATURES).
SELECT
    user_id,
    CAST(tenure_days AS DOUBLE) AS tenure_days,
    CAST(events_30d AS DOUBLE) AS events_30d,
    CAST(active_days_30d AS DOUBLE) AS active_days_30d,
    CAST(sessions_30d AS DOUBLE) AS sessions_30d,
    CAST(avg_order_value AS DOUBLE) AS avg_order_value,
    CAST(orders_90d AS DOUBLE) AS orders_90d,
    CAST(support_tickets_90d AS DOUBLE) AS support_tickets_90d,
    CAST(days_since_last_event AS DOUBLE) AS days_since_last_event
FROM crm.customers
