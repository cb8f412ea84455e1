SELECT
    ds,
    campaign,
    SUM(CASE WHEN exposed AND converted THEN 1 ELSE 0 END) AS exposed_converted,
    SUM(CASE WHEN exposed AND NOT converted THEN 1 ELSE 0 END) AS exposed_not_converted,
    SUM(CASE WHEN NOT exposed AND converted THEN 1 ELSE 0 END) AS unexposed_converted,
    SUM(CASE WHEN NOT exposed AND NOT converted THEN 1 ELSE 0 END) AS unexposed_not_converted
FROM crm.campaign_users
WHERE campaign = 'spring_sale'
  AND ds = DATE '2024-01-01'
GROUP BY ds, campaign
