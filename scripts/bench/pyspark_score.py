"""PySpark baseline of quern's scoring benchmark: the team's current way of scoring,
`mapInPandas` with a scikit-learn model, on local[2].

    python scripts/bench/pyspark_score.py <features_parquet_dir> <out_dir> <rows>

Reads the features table's Parquet files (the benchmark's Delta table data), scores
every row with a gradient boosting model trained like scoring_models.py's, writes
Parquet, and prints the wall time of the read-score-write job.
"""
import os
import sys
import time

# The workers must run this interpreter (its venv has scikit-learn).
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

src, out, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(1)
X = rng.uniform(-2.0, 2.0, size=(200_000, 8))
logit = X @ np.array([0.8, -0.5, 0.3, 0.0, 1.1, -0.7, 0.2, 0.4]) + 0.6 * X[:, 0] * X[:, 1]
y = (rng.uniform(size=len(X)) < 1 / (1 + np.exp(-logit))).astype(np.int64)
models = {
    "lr": LogisticRegression(max_iter=500).fit(X, y),
    "gbm": GradientBoostingClassifier(n_estimators=100, max_depth=6, random_state=1).fit(X[:50_000], y[:50_000]),
}
spark = (
    SparkSession.builder.master("local[2]")
    .config("spark.driver.memory", "6g")
    .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    .config("spark.ui.enabled", "false")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
cols = [f"f{i}" for i in range(8)]
for name, model in models.items():
    def score(batches, model=model):
        for pdf in batches:
            yield pd.DataFrame({"id": pdf["id"], "p": model.predict_proba(pdf[cols].to_numpy())[:, 1]})

    start = time.perf_counter()
    df = spark.read.parquet(src)
    df.mapInPandas(score, "id long, p double").write.mode("overwrite").parquet(f"{out}/{name}")
    secs = time.perf_counter() - start
    print(f"PySpark mapInPandas + scikit-learn {name}: {rows / secs / 1e6:.2f} M rows/s ({rows} rows in {secs:.1f} s, local[2])", flush=True)
spark.stop()
