-- What the churn model learns from: each customer's features (as the model takes them)
-- and whether they churned, as the CRM recorded it afterwards. The train task reads
-- this table.
SELECT
    f.user_id,
    f.tenure_days,
    f.events_30d,
    f.active_days_30d,
    f.sessions_30d,
    f.avg_order_value,
    f.orders_90d,
    f.support_tickets_90d,
    f.days_since_last_event,
    CAST(l.churned AS BIGINT) AS churned
FROM scoring.customer_features AS f
JOIN crm.churn_labels AS l ON l.user_id = f.user_id
WHERE f.tenure_days IS NOT NULL
  AND f.events_30d IS NOT NULL
  AND f.active_days_30d IS NOT NULL
  AND f.sessions_30d IS NOT NULL
  AND f.avg_order_value IS NOT NULL
  AND f.orders_90d IS NOT NULL
  AND f.support_tickets_90d IS NOT NULL
  AND f.days_since_last_event IS NOT NULL
  AND l.churned IS NOT NULL
