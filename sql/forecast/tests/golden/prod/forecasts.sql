-- Train and estimate in one pass: STL-decompose each store's recent daily sales
-- (weekly period) and forecast the next days from the decomposition.
WITH history AS (
    SELECT store, CAST(day AS DATE) AS day, CAST(sales AS DOUBLE) AS sales
    FROM shop.daily_sales
    WHERE CAST(day AS DATE) > DATE '2024-01-01' - INTERVAL '56 days'
      AND CAST(day AS DATE) <= DATE '2024-01-01'
),
fitted AS (
    SELECT store, stl_forecast(day, sales, 7, 7) AS points
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
    DATE '2024-01-01' AS made_on
FROM points
