-- Odds ratio (a*d)/(b*c) of the 2x2 table
--                 converted   not converted
--   exposed           a             b
--   not exposed       c             d
-- with the Wald 95% interval exp(ln(OR) +/- 1.96 * sqrt(1/a + 1/b + 1/c + 1/d)).
-- An empty cell makes the ratio undefined: NULL rather than a division by zero.
WITH cells AS (
    SELECT
        ds,
        campaign,
        CAST(exposed_converted AS DOUBLE) AS a,
        CAST(exposed_not_converted AS DOUBLE) AS b,
        CAST(unexposed_converted AS DOUBLE) AS c,
        CAST(unexposed_not_converted AS DOUBLE) AS d
    FROM reporting.exposure_contingency
),
ratio AS (
    SELECT
        *,
        CASE WHEN a * b * c * d > 0 THEN (a * d) / (b * c) END AS odds_ratio,
        CASE WHEN a * b * c * d > 0 THEN sqrt(1 / a + 1 / b + 1 / c + 1 / d) END AS se_log_or
    FROM cells
)
SELECT
    campaign,
    CAST(a AS BIGINT) AS exposed_converted,
    CAST(b AS BIGINT) AS exposed_not_converted,
    CAST(c AS BIGINT) AS unexposed_converted,
    CAST(d AS BIGINT) AS unexposed_not_converted,
    odds_ratio,
    exp(ln(odds_ratio) - 1.96 * se_log_or) AS ci_low,
    exp(ln(odds_ratio) + 1.96 * se_log_or) AS ci_high,
    ds
FROM ratio
