-- The odds ratio of converting when exposed to var('campaign') on the run day, with
-- its 95% confidence interval, from the built-in odds_ratio aggregate over the 2x2
-- table exposed x converted. An empty cell gives NULL rather than a division by zero.
WITH ratio AS (
    SELECT ds, campaign, odds_ratio(exposed, converted) AS r
    FROM reporting.campaign_users_day
    GROUP BY ds, campaign
)
SELECT
    campaign,
    r['exposed_outcome'] AS exposed_converted,
    r['exposed_no_outcome'] AS exposed_not_converted,
    r['unexposed_outcome'] AS unexposed_converted,
    r['unexposed_no_outcome'] AS unexposed_not_converted,
    r['odds_ratio'] AS odds_ratio,
    r['ci_low'] AS ci_low,
    r['ci_high'] AS ci_high,
    ds
FROM ratio
