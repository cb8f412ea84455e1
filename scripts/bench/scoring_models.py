"""The models of quern's scoring benchmark, and the Python baselines it is compared with.

    python scripts/bench/scoring_models.py <out_dir> [rows]

Trains on 200k generated rows of 8 features, exports ONNX to <out_dir>/{lr,gbm}.onnx,
then measures single-threaded throughput on an in-memory float64 numpy array of <rows>
rows (default 10M; the gradient boosting on 1M): scikit-learn predict_proba and
onnxruntime with one intra-op thread. Prints one line per measurement, and writes the
rates (rows/s) as `key value` lines to <out_dir>/rates.txt for the caller's ratios.
"""
import os
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

out = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
rng = np.random.default_rng(1)


def features(n):
    # What the benchmark's SQL generates: uniform in [-2, 2).
    return rng.uniform(-2.0, 2.0, size=(n, 8))


X = features(200_000)
logit = X @ np.array([0.8, -0.5, 0.3, 0.0, 1.1, -0.7, 0.2, 0.4]) + 0.6 * X[:, 0] * X[:, 1]
y = (rng.uniform(size=len(X)) < 1 / (1 + np.exp(-logit))).astype(np.int64)
lr = LogisticRegression(max_iter=500).fit(X, y)
gbm = GradientBoostingClassifier(n_estimators=100, max_depth=6, random_state=1).fit(X[:50_000], y[:50_000])
for name, model in [("lr", lr), ("gbm", gbm)]:
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    with open(os.path.join(out, f"{name}.onnx"), "wb") as f:
        f.write(onx.SerializeToString())


rates = {}


def rate(key, label, fn, n):
    fn(features(1000))  # warm up
    data = features(n)
    start = time.perf_counter()
    fn(data)
    secs = time.perf_counter() - start
    rates[key] = n / secs
    print(f"{label}: {n / secs / 1e6:.2f} M rows/s ({n} rows in {secs:.2f} s, 1 thread)", flush=True)


options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
sessions = {
    name: ort.InferenceSession(os.path.join(out, f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
    for name in ("lr", "gbm")
}
rate("sklearn_lr", "scikit-learn LogisticRegression.predict_proba", lr.predict_proba, rows)
rate("onnxruntime_lr", "onnxruntime LR", lambda d: sessions["lr"].run(None, {"X": d.astype(np.float32)}), rows)
gbm_rows = min(rows, 1_000_000)
rate("sklearn_gbm", "scikit-learn GradientBoosting(100 trees, depth 6).predict_proba", gbm.predict_proba, gbm_rows)
rate("onnxruntime_gbm", "onnxruntime GBM", lambda d: sessions["gbm"].run(None, {"X": d.astype(np.float32)}), gbm_rows)
with open(os.path.join(out, "rates.txt"), "w") as f:
    for key, value in rates.items():
        f.write(f"{key} {value}\n")
