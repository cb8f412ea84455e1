//! The statistical SQL functions against reference values computed with scipy and
//! statsmodels (scripts/fixtures/stats_reference.py, committed in tests/fixtures/).

use quern::datafusion::arrow::util::display::array_value_to_string;
use quern::Engine;

use crate::common::{repo_root, TempProject};

fn fixture(name: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures").join(name)).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

async fn rows(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    let batches = engine.query(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect(),
            );
        }
    }
    out
}

fn close(a: &str, b: &str, tol: f64) {
    let (x, y): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
    assert!((x - y).abs() <= tol * y.abs().max(1.0), "{x} vs {y}");
}

/// `VALUES` rows for a 2×2 table with the given cell counts.
fn table_sql(a: usize, b: usize, c: usize, d: usize) -> String {
    let mut rows = Vec::new();
    for (n, e, o) in [
        (a, true, true),
        (b, true, false),
        (c, false, true),
        (d, false, false),
    ] {
        rows.extend(std::iter::repeat_n(format!("({e}, {o})"), n));
    }
    format!("(VALUES {}) AS t(exposed, converted)", rows.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odds_ratio_matches_scipy() {
    let project = TempProject::new();
    let engine = project.engine("local");
    for row in fixture("odds_ratio.csv") {
        let n: Vec<usize> = row[..4].iter().map(|v| v.parse().unwrap()).collect();
        let sql = format!(
            "SELECT r['odds_ratio'], r['ci_low'], r['ci_high'], r['exposed_outcome'], r['unexposed_no_outcome'] FROM (SELECT odds_ratio(exposed, converted) AS r FROM {})",
            table_sql(n[0], n[1], n[2], n[3])
        );
        let got = &rows(&engine, &sql).await[0];
        for i in 0..3 {
            close(&got[i], &row[4 + i], 1e-12);
        }
        assert_eq!(
            (got[3].as_str(), got[4].as_str()),
            (row[0].as_str(), row[3].as_str())
        );
    }
    // An empty cell: no ratio rather than infinity.
    let got = &rows(
        &engine,
        &format!(
            "SELECT odds_ratio(exposed, converted)['odds_ratio'] IS NULL FROM {}",
            table_sql(0, 3, 4, 5)
        ),
    )
    .await[0];
    assert_eq!(got[0], "true");
}

fn series_sql() -> String {
    let values: Vec<String> = fixture("stl_weekly.csv")
        .iter()
        .map(|r| format!("(DATE '{}', {})", r[0], r[1]))
        .collect();
    // Two groups: the reference series, and a short one (NULL: under two periods).
    format!(
        "(SELECT 'k' AS key, d AS day, v AS value FROM (VALUES {}) AS t(d, v) UNION ALL SELECT 'short', DATE '2024-01-01' + CAST(n AS INT), 1.0 FROM (SELECT value AS n FROM range(0, 5)))",
        values.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stl_decomposition_matches_statsmodels() {
    let project = TempProject::new();
    let engine = project.engine("local");
    let sql = format!(
        "SELECT c['day'], c['trend'], c['seasonal'], c['remainder'] FROM (SELECT unnest(stl_decompose(day, value, 7)) AS c FROM {} WHERE key = 'k' GROUP BY key)",
        series_sql()
    );
    let got = rows(&engine, &sql).await;
    let expected = fixture("stl_weekly.csv");
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g[0], e[0]);
        close(&g[1], &e[2], 1e-9);
        close(&g[2], &e[3], 1e-9);
        close(&g[3], &e[4], 1e-9);
    }
    let short = rows(
        &engine,
        &format!(
            "SELECT stl_decompose(day, value, 7) IS NULL FROM {} WHERE key = 'short' GROUP BY key",
            series_sql()
        ),
    )
    .await;
    assert_eq!(short, [["true"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stl_forecast_continues_the_decomposition() {
    let project = TempProject::new();
    let engine = project.engine("local");
    let sql = format!(
        "SELECT f['day'], f['forecast'] FROM (SELECT unnest(stl_forecast(day, value, 7, 10)) AS f FROM {} WHERE key = 'k' GROUP BY key)",
        series_sql()
    );
    let got = rows(&engine, &sql).await;
    let expected = fixture("stl_forecast.csv");
    assert_eq!(got.len(), 10);
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g[0], e[0]);
        close(&g[1], &e[1], 1e-9);
    }
    // Gaps are refused: STL needs one value per day.
    let err = engine
        .query("SELECT stl_forecast(d, 1.0, 7, 3) FROM (VALUES (DATE '2024-01-01'), (DATE '2024-01-03')) AS t(d)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("STL needs one value per day: 2024-01-01 is followed by a gap at 2024-01-02"),
        "{err}"
    );
}
