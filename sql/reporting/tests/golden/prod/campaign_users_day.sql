SELECT
    ds,
    campaign,
    user_id,
    exposed,
    converted
FROM crm.campaign_users
WHERE campaign = 'spring_sale'
  AND ds = DATE '2024-01-01'
