{#- Macros for every task; call them by name, no import needed. -#}

{% macro safe_divide(numerator, denominator) -%}
CASE WHEN {{ denominator }} = 0 THEN NULL ELSE CAST({{ numerator }} AS DOUBLE) / {{ denominator }} END
{%- endmacro %}

{% macro on_day(column, day) -%}
{{ column }} = DATE {{ day | sql_string }}
{%- endmacro %}

{#- The run day, or the run day and the `lookback` days before it (to pick up late
    events): partition tasks then replace every day of the window. -#}
{% macro in_window(column, day, lookback) -%}
{% if lookback == 0 -%}
{{ column }} = DATE {{ day | sql_string }}
{%- else -%}
{{ column }} BETWEEN DATE {{ day | sql_string }} - INTERVAL '{{ lookback }} days' AND DATE {{ day | sql_string }}
{%- endif %}
{%- endmacro %}
