SELECT
    campaign,
    COUNT(*) AS users,
    SUM(CASE WHEN exposed THEN 1 ELSE 0 END) AS exposed_users,
    SUM(CASE WHEN converted THEN 1 ELSE 0 END) AS conversions,
    CASE WHEN COUNT(*) = 0 THEN NULL ELSE CAST(SUM(CASE WHEN converted THEN 1 ELSE 0 END) AS DOUBLE) / COUNT(*) END AS conversion_rate,
    SUM(revenue) AS revenue,
    ds
FROM crm.campaign_users
WHERE ds = DATE '2024-01-01'
GROUP BY campaign, ds
