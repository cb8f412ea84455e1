SELECT
    ds,
    campaign,
    user_id,
    exposed,
    converted
FROM {{ source('crm', 'campaign_users') }}
WHERE campaign = {{ var('campaign') | sql_string }}
  AND {{ on_day('ds', ds) }}
