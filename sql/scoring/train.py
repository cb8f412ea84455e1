"""The scoring pipeline's train task: fits the churn model on `training_set`, logs the
search, its parameters and metrics to MLflow, and registers the model (exported to
ONNX) as a new version of `churn`, with the alias `challenger` moved to it.

quern runs it after `training_set` commits (`[tasks.train]` in pipeline.toml), with the
table's URI in QUERN_TABLE_SCORING__TRAINING_SET, the storage options a `deltalake`
reader needs in QUERN_STORAGE_OPTIONS, and the environment's MLflow server in
MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_TOKEN). The scoring task downstream then
scores with the version the alias names now.
"""

import json
import os

import mlflow
import numpy as np
from deltalake import DeltaTable
from mlflow import MlflowClient
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import GridSearchCV, train_test_split

# In the order the model takes them (customer_features.sql, churn_scores.sql).
FEATURES = [
    "tenure_days", "events_30d", "active_days_30d", "sessions_30d",
    "avg_order_value", "orders_90d", "support_tickets_90d", "days_since_last_event",
]
MODEL, ALIAS = "churn", "challenger"

ds, env = os.environ["QUERN_DS"], os.environ["QUERN_ENV"]
storage = json.loads(os.environ.get("QUERN_STORAGE_OPTIONS") or "{}")
table = DeltaTable(os.environ["QUERN_TABLE_SCORING__TRAINING_SET"], storage_options=storage or None)
data = table.to_pyarrow_table(columns=FEATURES + ["churned"])
X = np.column_stack([data.column(c).to_numpy() for c in FEATURES]).astype(np.float64)
y = data.column("churned").to_numpy()
print(f"training on {len(y)} customers ({y.mean():.1%} churned), version {table.version()} of training_set")

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=7, stratify=y)
search = GridSearchCV(
    GradientBoostingClassifier(random_state=7),
    {"n_estimators": [30, 60], "max_depth": [2, 3]},
    cv=3,
    scoring="roc_auc",
)
search.fit(X_train, y_train)
model = search.best_estimator_
p = model.predict_proba(X_test)[:, 1]
metrics = {
    "cv_auc": float(search.best_score_),
    "test_auc": float(roc_auc_score(y_test, p)),
    "test_log_loss": float(log_loss(y_test, p)),
}
print(f"best {search.best_params_}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))

mlflow.set_experiment("quern-scoring-train")
with mlflow.start_run(run_name=f"train {ds} ({env})"):
    mlflow.log_params({**search.best_params_, "rows": len(y), "ds": ds, "env": env})
    mlflow.log_metrics(metrics)
    onx = to_onnx(model, X[:1].astype(np.float32), target_opset={"": 17, "ai.onnx.ml": 3})
    info = mlflow.onnx.log_model(onx, name="model", registered_model_name=MODEL)
version = info.registered_model_version
MlflowClient().set_registered_model_alias(MODEL, ALIAS, version)
print(f"registered {MODEL} version {version}; {MODEL}@{ALIAS} -> {version}")
