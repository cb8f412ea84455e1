-- Train and estimate in one pass: STL-decompose each store's recent daily sales
-- (weekly period) and forecast the next days from the decomposition.
WITH history AS (
    SELECT store, CAST(day AS DATE) AS day, CAST(sales AS DOUBLE) AS sales
    FROM {{ source('shop', 'daily_sales') }}
    WHERE CAST(day AS DATE) > DATE '{{ ds }}' - INTERVAL '{{ var('history_days', 56) }} days'
      AND CAST(day AS DATE) <= DATE '{{ ds }}'
),
fitted AS (
    SELECT store, stl_forecast(day, sales, 7, {{ var('horizon_days', 7) }}) AS points
    FROM history
    GROUP BY store
),
points AS (
    SELECT store, unnest(points) AS p FROM fitted
)
SELECT
    store,
    p['day'] AS target_day,
    p['forecast'] AS forecast,
    DATE '{{ ds }}' AS made_on
FROM points
