"""TPC-H side by side: the 22 queries through `quern query` (one process per query, as a
user runs them) over Delta tables and over the same data as Parquet, and through DuckDB
in-process over the Parquet files, in one run. Medians of N runs (rounds of one run
per engine); every engine's row count is checked against DuckDB's. Delta ÷ Parquet is
also given per round (the two runs of a round are back to back) as the rounds' median.

The query texts are DuckDB's TPC-H extension's (`tpch_queries()`), the same for both
engines; for quern the table names are qualified with the source they are declared in.

Usage: tpch.py <quern binary> <data dir> <work dir> <threads> <runs>
"""

import glob
import os
import re
import statistics
import subprocess
import sys
import time

import duckdb

TABLES = ["lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region"]


def tpch_extension():
    root = os.path.join(os.path.dirname(duckdb.__file__), "..", "duckdb_extension_tpch")
    return glob.glob(os.path.join(root, "extensions", "*", "tpch.duckdb_extension"))[0]


def qualify(sql, schema):
    """`sql` with each table of a FROM list or JOIN written `schema.table` (a name after
    FROM, JOIN or a comma of a FROM list; TPC-H's aliases such as `AS nation` are not)."""
    out, prev = [], ""
    for tok in re.split(r"(\s+|,|\(|\))", sql):
        if tok.lower() in TABLES and prev.upper() in ("FROM", "JOIN", ","):
            tok = f"{schema}.{tok}"
        out.append(tok)
        if tok.strip():
            prev = tok
    return "".join(out)


def quern(binary, project, env, sql):
    """Wall time of one `quern query` process and the rows it printed."""
    start = time.perf_counter()
    done = subprocess.run(
        [binary, "--project", project, "--env", env, "query", "--format", "csv", sql],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"quern --env {env} failed:\n{sql}\n{done.stderr}")
    return seconds, len(done.stdout.splitlines()) - 1


def main():
    binary, data, work, threads, runs = sys.argv[1:6]
    threads, runs = int(threads), int(runs)
    # Optionally a few queries by number ("7,18"), to measure them again in more rounds.
    only = {int(q) for q in sys.argv[6].split(",")} if len(sys.argv) > 6 and sys.argv[6] else None
    con = duckdb.connect()
    con.execute(f"LOAD '{tpch_extension()}'")
    con.execute(f"SET threads = {threads}")
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data}/parquet/{t}.parquet')")
    queries = con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY query_nr").fetchall()
    rows = []
    for n, sql in queries:
        if only is not None and n not in only:
            continue
        sql = sql.strip().rstrip(";")
        # Round by round, each engine once per round, so that the host's drift (a
        # shared machine speeds up and slows down by minutes) weighs on all three alike;
        # quern over Delta and over Parquet back to back, in turns first, so that
        # neither always follows DuckDB.
        duck, duck_rows = [], None
        times = {"delta": [], "parquet": []}
        for round_ in range(runs):
            start = time.perf_counter()
            duck_rows = len(con.execute(sql).fetchall())
            duck.append(time.perf_counter() - start)
            for env in ("delta", "parquet") if round_ % 2 == 0 else ("parquet", "delta"):
                seconds, count = quern(binary, work, env, qualify(sql, "tpch"))
                if count != duck_rows:
                    sys.exit(f"Q{n} on {env}: quern returned {count} rows, DuckDB {duck_rows}")
                times[env].append(seconds)
        timed = {env: statistics.median(t) for env, t in times.items()}
        # Each round's Delta ÷ Parquet, from its two back-to-back runs: their median
        # is less swayed by the drift between rounds than the ratio of the medians.
        paired = statistics.median(d / p for d, p in zip(times["delta"], times["parquet"]))
        rows.append((n, duck_rows, timed["delta"], timed["parquet"], statistics.median(duck), paired))
        d = rows[-1]
        print(f"Q{n:<3} {d[1]:>6} rows  quern delta {d[2]:6.3f} s  parquet {d[3]:6.3f} s  "
              f"duckdb {d[4]:6.3f} s  delta/duckdb x{d[2] / d[4]:.2f}", flush=True)
    print()
    print("| query | rows | quern Delta (s) | quern Parquet (s) | DuckDB (s) | Delta ÷ DuckDB | Parquet ÷ DuckDB | Delta ÷ Parquet | same, paired by round |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, count, delta, parquet, duck, paired in rows:
        print(f"| Q{n} | {count} | {delta:.3f} | {parquet:.3f} | {duck:.3f} | ×{delta / duck:.2f} | ×{parquet / duck:.2f} | ×{delta / parquet:.2f} | ×{paired:.2f} |")
    total = [sum(r[i] for r in rows) for i in (2, 3, 4)]
    print(f"| total | | {total[0]:.2f} | {total[1]:.2f} | {total[2]:.2f} | ×{total[0] / total[2]:.2f} | ×{total[1] / total[2]:.2f} | ×{total[0] / total[1]:.2f} | |")
    worst = sorted(rows, key=lambda r: r[2] / r[4], reverse=True)[:7]
    print("worst (Delta ÷ DuckDB): " + ", ".join(f"Q{r[0]} ×{r[2] / r[4]:.1f}" for r in worst))


if __name__ == "__main__":
    main()
