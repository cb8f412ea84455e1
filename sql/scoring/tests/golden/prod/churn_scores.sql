-- churn() is the model the environment maps it to ([models] churn): a local ONNX file
-- on local, a registry alias on alpha (@challenger) and prod (@champion). A customer
-- with a missing feature would score NULL, so such customers are left out.
SELECT
    user_id,
    churn(
        tenure_days, events_30d, active_days_30d, sessions_30d,
        avg_order_value, orders_90d, support_tickets_90d, days_since_last_event
    ) AS p_churn,
    DATE '2024-01-01' AS scored_on
FROM scoring.customer_features
WHERE tenure_days IS NOT NULL
  AND events_30d IS NOT NULL
  AND active_days_30d IS NOT NULL
  AND sessions_30d IS NOT NULL
  AND avg_order_value IS NOT NULL
  AND orders_90d IS NOT NULL
  AND support_tickets_90d IS NOT NULL
  AND days_since_last_event IS NOT NULL
