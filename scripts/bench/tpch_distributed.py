"""TPC-H on Ballista: the 22 queries through `quern query` (one process per query) over
the Delta tables, embedded and on two clusters of quern processes on this machine — a
scheduler with one executor, and a scheduler with two — each executor pinned to a core
of its own with `taskset` (two one-core machines on a two-core box). Medians of N runs,
per query interleaved; every cluster's row count is checked against the embedded run.

Usage: tpch_distributed.py <quern binary> <work dir> <runs>
(the work dir holds environments embedded.toml, dist1.toml and dist2.toml whose
`[engine] ballista` point at ports 50150 and 50250.)
"""

import os
import statistics
import subprocess
import sys
import time

import duckdb

from tpch import qualify, quern, tpch_extension


class Cluster:
    """A `quern scheduler` on `port` and one `quern executor` per core in `cores`."""

    def __init__(self, binary, work, env, port, cores):
        self.procs, self.log = [], os.path.join(work, f"{env}-scheduler.log")
        logenv = dict(os.environ, QUERN_LOG="info,ballista_scheduler=debug")
        self.procs.append(subprocess.Popen(
            [binary, "scheduler", "--bind", f"127.0.0.1:{port}"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=logenv))
        time.sleep(1)
        for i, core in enumerate(cores):
            flight = port + 1 + 2 * i
            self.procs.append(subprocess.Popen(
                ["taskset", "-c", str(core), binary, "--project", work, "--env", env,
                 "executor", "--scheduler", f"127.0.0.1:{port}",
                 "--bind", f"127.0.0.1:{flight}", "--grpc-port", str(flight + 1),
                 "--concurrent-tasks", "1", "--work-dir", os.path.join(work, f"{env}-work-{i}")],
                stdout=open(os.path.join(work, f"{env}-executor-{i}.log"), "w"),
                stderr=subprocess.STDOUT))
        deadline = time.time() + 60
        while open(self.log).read().count("Received register executor request") < len(cores):
            if time.time() > deadline:
                sys.exit(f"the executors of {env} did not register:\n{open(self.log).read()}")
            time.sleep(0.1)

    def stop(self):
        for p in self.procs:
            p.terminate()
            p.wait()


def main():
    binary, work, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    con = duckdb.connect()
    con.execute(f"LOAD '{tpch_extension()}'")
    queries = con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY query_nr").fetchall()
    clusters = [Cluster(binary, work, "dist1", 50150, [0]), Cluster(binary, work, "dist2", 50250, [0, 1])]
    envs = ("embedded", "dist1", "dist2")
    rows = []
    try:
        for n, sql in queries:
            sql = qualify(sql.strip().rstrip(";"), "tpch")
            times, counts = {e: [] for e in envs}, {}
            for _ in range(runs):
                for env in envs:
                    seconds, counts[env] = quern(binary, work, env, sql)
                    times[env].append(seconds)
            for env in envs[1:]:
                if counts[env] != counts["embedded"]:
                    sys.exit(f"Q{n} on {env}: {counts[env]} rows, embedded {counts['embedded']}")
            t = [statistics.median(times[e]) for e in envs]
            rows.append((n, counts["embedded"], *t))
            print(f"Q{n:<3} {counts['embedded']:>6} rows  embedded {t[0]:6.3f} s  1 executor {t[1]:6.3f} s  "
                  f"2 executors {t[2]:6.3f} s  1÷2 x{t[1] / t[2]:.2f}", flush=True)
    finally:
        for c in clusters:
            c.stop()
    print()
    print("| query | rows | embedded (s) | Ballista, 1 executor (s) | Ballista, 2 executors (s) | 1 ÷ embedded | 2 ÷ embedded | 1 ÷ 2 |")
    print("|---|---|---|---|---|---|---|---|")
    for n, count, e, one, two in rows:
        print(f"| Q{n} | {count} | {e:.3f} | {one:.3f} | {two:.3f} | ×{one / e:.2f} | ×{two / e:.2f} | ×{one / two:.2f} |")
    e, one, two = (sum(r[i] for r in rows) for i in (2, 3, 4))
    print(f"| total | | {e:.2f} | {one:.2f} | {two:.2f} | ×{one / e:.2f} | ×{two / e:.2f} | ×{one / two:.2f} |")


if __name__ == "__main__":
    main()
