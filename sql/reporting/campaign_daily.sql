SELECT
    campaign,
    COUNT(*) AS users,
    SUM(CASE WHEN exposed THEN 1 ELSE 0 END) AS exposed_users,
    SUM(CASE WHEN converted THEN 1 ELSE 0 END) AS conversions,
    {{ safe_divide('SUM(CASE WHEN converted THEN 1 ELSE 0 END)', 'COUNT(*)') }} AS conversion_rate,
    SUM(revenue) AS revenue,
    ds
FROM {{ source('crm', 'campaign_users') }}
WHERE {{ on_day('ds', ds) }}
GROUP BY campaign, ds
