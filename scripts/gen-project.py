#!/usr/bin/env python3
"""Writes a generated quern project of many pipelines in layers, for the project-DAG
tests and the whole-project planning benchmark.

    scripts/gen-project.py OUT [--pipelines 19] [--tasks 500]

Pipelines are staging_N, intermediate_N and marts_N (about a third each). Staging tasks
start from inline rows or chain within their pipeline; intermediate tasks join a task of
their own pipeline with one of a staging pipeline (`ref('staging_2', 'stg_013')`); marts
join intermediate tasks. Every task has the columns id, k, v, uses a macro and vars, and
a third of them are views. Staging pipelines are tagged `daily`; every tenth mart task
is tagged `finance`. The output is deterministic.
"""

import argparse
import os


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def layer_sizes(pipelines):
    staging = max(1, pipelines // 3)
    marts = max(1, pipelines // 3)
    return staging, pipelines - staging - marts, marts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--pipelines", type=int, default=19)
    parser.add_argument("--tasks", type=int, default=500)
    args = parser.parse_args()
    root, n_pipelines, n_tasks = args.out, args.pipelines, args.tasks

    write(root, "environments/local.toml",
          '[warehouse]\nroot = "warehouse"\n[engine]\nmax_concurrent_tasks = 4\n'
          '[vars]\nthreshold = 0\nlabel = "gen"\n')
    write(root, "sql/macros/util.sql",
          "{% macro safe_divide(n, d) -%}CASE WHEN {{ d }} = 0 THEN NULL "
          "ELSE CAST({{ n }} AS DOUBLE) / {{ d }} END{%- endmacro %}\n")

    n_stg, n_int, n_mart = layer_sizes(n_pipelines)
    layers = [("staging", "stg", n_stg, 0.3), ("intermediate", "int", n_int, 0.4),
              ("marts", "mart", n_mart, 0.3)]
    # Tasks per layer, then round-robin over the layer's pipelines.
    counts = [int(n_tasks * share) for _, _, _, share in layers]
    counts[1] += n_tasks - sum(counts)
    tasks = {}  # pipeline -> [(task, sql, materialized, tags)]
    by_layer = []  # per layer: [(pipeline, task)]
    number = 0
    for li, ((layer, prefix, n_p, _), count) in enumerate(zip(layers, counts)):
        names = [f"{layer}_{i + 1}" for i in range(n_p)]
        placed = []
        for j in range(count):
            pipeline = names[j % n_p]
            own = tasks.setdefault(pipeline, [])
            task = f"{prefix}_{number:03d}"
            number += 1
            if li == 0:
                if not own or j % 4 == 0:
                    sql = (f"SELECT * FROM (VALUES (1, 'a', {number}.5), (2, 'b', 3.0)) "
                           "AS t(id, k, v)\nWHERE v > {{ var('threshold') }}")
                else:
                    prev = own[-1][0]
                    sql = (f"SELECT id, k || {{{{ var('label') | sql_string }}}} AS k, v + 1 AS v\n"
                           f"FROM {{{{ ref('{prev}') }}}}")
            else:
                lower = by_layer[li - 1]
                other_p, other_t = lower[(j * 7919) % len(lower)]
                a = f"ref('{own[-1][0]}')" if own else None
                b = f"ref('{other_p}', '{other_t}')"
                if a is None:
                    second_p, second_t = lower[(j * 104729 + 1) % len(lower)]
                    a = f"ref('{second_p}', '{second_t}')"
                sql = (f"-- {layer} task {number}\n"
                       f"SELECT a.id, a.k, {{{{ safe_divide('a.v', 'b.v') }}}} AS v\n"
                       f"FROM {{{{ {a} }}}} AS a\n"
                       f"JOIN {{{{ {b} }}}} AS b ON a.id = b.id\n"
                       "WHERE a.v > {{ var('threshold') }}")
            materialized = "view" if number % 3 == 0 else "table"
            tags = ["finance"] if li == 2 and number % 10 == 0 else []
            own.append((task, sql, materialized, tags))
            placed.append((pipeline, task))
        by_layer.append(placed)

    for pipeline, own in tasks.items():
        toml = f'description = "generated {pipeline}"\n'
        if pipeline.startswith("staging_"):
            toml += 'tags = ["daily"]\n'
        for task, sql, materialized, tags in own:
            write(root, f"sql/{pipeline}/{task}.sql", sql + "\n")
            if materialized != "table" or tags:
                toml += f"[tasks.{task}]\n"
                if materialized != "table":
                    toml += f'materialized = "{materialized}"\n'
                if tags:
                    toml += "tags = [" + ", ".join(f'"{t}"' for t in tags) + "]\n"
        write(root, f"sql/{pipeline}/pipeline.toml", toml)


if __name__ == "__main__":
    main()
