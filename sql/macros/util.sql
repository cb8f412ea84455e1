{#- Macros for every task; call them by name, no import needed. -#}

{% macro safe_divide(numerator, denominator) -%}
CASE WHEN {{ denominator }} = 0 THEN NULL ELSE CAST({{ numerator }} AS DOUBLE) / {{ denominator }} END
{%- endmacro %}

{% macro on_day(column, day) -%}
{{ column }} = DATE {{ day | sql_string }}
{%- endmacro %}
