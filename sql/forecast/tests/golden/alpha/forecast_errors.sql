-- A-posteriori validation: every forecast made before the run day for the run day,
-- joined with the actual sales of that day.
SELECT
    f.store,
    f.made_on,
    f.forecast,
    CAST(a.sales AS DOUBLE) AS actual,
    f.forecast - CAST(a.sales AS DOUBLE) AS error,
    abs(f.forecast - CAST(a.sales AS DOUBLE)) / abs(CAST(a.sales AS DOUBLE)) AS abs_pct_error,
    f.target_day AS ds
FROM forecast.forecasts AS f
JOIN shop.daily_sales AS a
    ON a.store = f.store AND CAST(a.day AS DATE) = f.target_day
WHERE f.target_day = DATE '2024-01-01'
  AND f.made_on < DATE '2024-01-01'
