//! Delta on S3 against a real S3 protocol server on loopback (`moto_server`, which
//! answers conditional PUT the way S3 does), with a fault-injecting HTTP proxy in front
//! of it for the retry tests. Nothing here mocks the S3 client.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{stderr, stdout, TempProject};

/// The secret used by the test environments; tests assert it is never printed.
pub const SECRET: &str = "quern-test-secret-7f3a9c";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `moto_server` on a free loopback port, stopped when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Self {
        // scripts/test installs moto[server] into the test venv next to QUERN_PYTHON.
        let bin = std::env::var("QUERN_MOTO").unwrap_or_else(|_| {
            let python = crate::common::python();
            let sibling = std::path::Path::new(&python).with_file_name("moto_server");
            if sibling.is_file() {
                sibling.display().to_string()
            } else {
                "moto_server".into()
            }
        });
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}); scripts/test installs it, or set QUERN_MOTO")
            });
        wait_for_port(port);
        Moto { child, port }
    }

    pub fn create_bucket(&self, bucket: &str) {
        let status = http(self.port, "PUT", &format!("/{bucket}"), b"");
        assert!(status == 200, "creating bucket {bucket}: HTTP {status}");
    }

    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let status = http(self.port, "PUT", &format!("/{bucket}/{key}"), body);
        assert!(status == 200, "putting {bucket}/{key}: HTTP {status}");
    }

    /// Keys under `prefix` in `bucket` (ListObjectsV2, first page).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (_, body) = http_body(
            self.port,
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}&max-keys=1000"),
            b"",
        );
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(port: u16, method: &str, path: &str, body: &[u8]) -> u16 {
    http_body(port, method, path, body).0
}

/// One unsigned HTTP/1.1 request (moto does not check signatures).
fn http_body(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// An HTTP proxy in front of moto that answers some requests itself with an error
/// status instead of forwarding them.
pub struct FaultProxy {
    pub port: u16,
    pub faults_served: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    /// Answers `status` to every `every`-th request (and to all when `every` is 1); with
    /// status 0, lets every `every`-th GET stall without an answer instead.
    pub fn start(upstream: u16, status: u16, every: usize) -> Self {
        Self::with_rule(
            upstream,
            Rule {
                status,
                every,
                only: None,
            },
        )
    }

    /// Answers `status` to the first `times` requests whose request line contains
    /// `only` (e.g. a table's `_delta_log/`), and forwards every other request.
    pub fn failing(upstream: u16, status: u16, only: &'static str, times: usize) -> Self {
        Self::with_rule(
            upstream,
            Rule {
                status,
                every: times,
                only: Some(only),
            },
        )
    }

    fn with_rule(upstream: u16, rule: Rule) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let faults_served = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (faults, seen) = (faults_served.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (faults, seen, count) = (faults.clone(), seen.clone(), count.clone());
                std::thread::spawn(move || serve(conn, upstream, rule, &count, &faults, &seen));
            }
        });
        FaultProxy {
            port,
            faults_served,
            requests,
        }
    }
}

/// Which requests the proxy answers itself: every `every`-th, or (with `only`) the
/// first `every` whose request line contains `only`.
#[derive(Clone, Copy)]
struct Rule {
    status: u16,
    every: usize,
    only: Option<&'static str>,
}

fn serve(
    mut client: TcpStream,
    upstream: u16,
    rule: Rule,
    count: &AtomicUsize,
    faults: &AtomicUsize,
    seen: &Mutex<Vec<String>>,
) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    loop {
        let Some((head, body)) = read_request(&mut client) else {
            return;
        };
        let line = head.lines().next().unwrap_or_default().to_string();
        seen.lock().unwrap().push(line.clone());
        let Rule {
            status,
            every,
            only,
        } = rule;
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let inject = match only {
            Some(part) => line.contains(part) && faults.load(Ordering::SeqCst) < every,
            None => n.is_multiple_of(every),
        };
        if status == 0 && line.starts_with("GET ") && inject {
            // A stalled read: no answer until the client's timeout has passed.
            faults.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
        if status != 0 && inject {
            faults.fetch_add(1, Ordering::SeqCst);
            let reason = if status == 403 {
                "Forbidden"
            } else {
                "Service Unavailable"
            };
            let body = format!("<Error><Code>{reason}</Code></Error>");
            let _ = client.write_all(
                format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/xml\r\n\r\n{body}", body.len()).as_bytes(),
            );
            continue;
        }
        // Forward with Connection: close and relay the whole response.
        let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return;
        };
        let mut forwarded = String::new();
        for l in head.lines().filter(|l| !l.is_empty()) {
            if !l.to_ascii_lowercase().starts_with("connection:") {
                forwarded.push_str(l);
                forwarded.push_str("\r\n");
            }
        }
        forwarded.push_str("Connection: close\r\n\r\n");
        if up.write_all(forwarded.as_bytes()).is_err() || up.write_all(&body).is_err() {
            return;
        }
        let mut response = Vec::new();
        let _ = up.read_to_end(&mut response);
        // The upstream closed; tell the client this connection closes too.
        let response = add_close(response);
        if std::env::var("QUERN_PROXY_DEBUG").is_ok() {
            let end = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(0);
            eprintln!(
                "PROXY {line}\n{}\n BODY {:?}",
                String::from_utf8_lossy(&response[..end]),
                String::from_utf8_lossy(&response[end..(end + 60).min(response.len())])
            );
        }
        if client.write_all(&response).is_err() {
            return;
        }
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
}

fn add_close(response: Vec<u8>) -> Vec<u8> {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return response;
    };
    let head = String::from_utf8_lossy(&response[..end]).to_string();
    if head.to_ascii_lowercase().contains("\r\nconnection:") {
        return response;
    }
    let mut out = format!("{head}\r\nConnection: close").into_bytes();
    out.extend_from_slice(&response[end..]);
    out
}

fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut body = Vec::new();
    let lower = head.to_ascii_lowercase();
    if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        body.resize(len, 0);
        s.read_exact(&mut body).ok()?;
    } else if lower.contains("transfer-encoding: chunked") {
        // Read chunks and forward them de-chunked with a length.
        loop {
            let mut size_line = Vec::new();
            while !size_line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).ok()?;
                size_line.push(byte[0]);
            }
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&size_line)
                    .trim()
                    .split(';')
                    .next()?,
                16,
            )
            .ok()?;
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
        let head = head
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("transfer-encoding"))
            .collect::<Vec<_>>()
            .join("\r\n");
        return Some((
            format!(
                "{}\r\nContent-Length: {}\r\n\r\n",
                head.trim_end(),
                body.len()
            ),
            body,
        ));
    }
    Some((head, body))
}

/// A copy of the example project with an `s3` environment whose warehouse and sources
/// live on the server at `port` (moto or a proxy in front of it).
pub fn s3_project(port: u16, warehouse_bucket: &str) -> TempProject {
    let project = TempProject::new();
    project.write(
        "environments/s3.toml",
        &format!(
            r#"[warehouse]
root = "s3://{warehouse_bucket}/warehouse"

[storage]
aws_endpoint = "http://127.0.0.1:{port}"
aws_region = "us-east-1"
aws_allow_http = "true"
aws_access_key_id = "${{QUERN_TEST_S3_KEY}}"
aws_secret_access_key = "${{QUERN_TEST_S3_SECRET}}"

[sources.raw]
events = {{ uri = "s3://quern-raw/events/raw_events.csv", format = "csv" }}
countries = {{ uri = "s3://quern-raw/countries/countries.csv", format = "csv" }}

[sources.crm]
campaign_users = {{ uri = "s3://quern-raw/crm/campaign_users.csv", format = "csv" }}

[vars]
excluded_event_types = ["debug", "heartbeat"]
campaign = "spring_sale"
min_events = 1
"#
        ),
    );
    project
}

/// Uploads the example seeds to `quern-raw`.
pub fn upload_seeds(moto: &Moto) {
    moto.create_bucket("quern-raw");
    let root = crate::common::repo_root();
    for (key, file) in [
        ("events/raw_events.csv", "sql/events/seeds/raw_events.csv"),
        ("countries/countries.csv", "sql/events/seeds/countries.csv"),
        (
            "crm/campaign_users.csv",
            "sql/reporting/seeds/campaign_users.csv",
        ),
    ] {
        moto.put("quern-raw", key, &std::fs::read(root.join(file)).unwrap());
    }
}

/// `quern --env s3 …` with the test credentials in its environment.
pub fn s3_command(project: &TempProject, env: &str, args: &[&str]) -> Command {
    let mut all = vec!["--env", env];
    all.extend_from_slice(args);
    let mut command = project.command(&all);
    command
        .env("QUERN_TEST_S3_KEY", "testing")
        .env("QUERN_TEST_S3_SECRET", SECRET);
    command
}

/// Runs `quern --env s3 …` with the test credentials.
pub fn quern_s3(project: &TempProject, args: &[&str]) -> Output {
    s3_command(project, "s3", args)
        .output()
        .expect("quern runs")
}

/// `quern --env s3 query <sql> --format csv`, which must succeed.
pub fn query_s3(project: &TempProject, sql: &str) -> String {
    let out = quern_s3(project, &["query", sql, "--format", "csv"]);
    assert_ok(&out);
    stdout(&out)
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    for text in [stdout(out), stderr(out)] {
        assert!(!text.contains(SECRET), "the secret was printed:\n{text}");
    }
}

#[test]
fn pipelines_run_on_s3_and_match_the_local_run() {
    let moto = Moto::start();
    upload_seeds(&moto);
    moto.create_bucket("quern-wh");
    let project = s3_project(moto.port, "quern-wh");
    for ds in ["2024-03-01", "2024-03-02", "2024-03-01"] {
        assert_ok(&quern_s3(&project, &["run", "events", "--ds", ds]));
        assert_ok(&quern_s3(&project, &["run", "reporting", "--ds", ds]));
    }
    let s3 = query_s3(
        &project,
        "SELECT event_date, count(*) AS n FROM events.events_by_day GROUP BY 1 ORDER BY 1",
    );
    for ds in ["2024-03-01", "2024-03-02"] {
        assert_ok(&project.quern(&["run", "events", "--ds", ds]));
    }
    assert_eq!(
        s3,
        project.query_csv(
            "SELECT event_date, count(*) AS n FROM events.events_by_day GROUP BY 1 ORDER BY 1"
        )
    );
    assert_eq!(s3.lines().count(), 3, "{s3}");

    // Three commits, partitioned by day, under the environment's root.
    let keys = moto.keys("quern-wh", "warehouse/events/events_by_day/");
    for v in 0..3 {
        assert!(
            keys.iter()
                .any(|k| k.ends_with(&format!("_delta_log/{v:020}.json"))),
            "{keys:?}"
        );
    }
    assert!(
        keys.iter().any(|k| k.contains("/event_date=2024-03-02/")),
        "{keys:?}"
    );
    assert_eq!(
        query_s3(
            &project,
            "SELECT odds_ratio FROM reporting.odds_ratio WHERE ds = DATE '2024-03-02'"
        ),
        "odds_ratio\n3.0\n"
    );
}

#[test]
fn transient_errors_are_retried() {
    let moto = Moto::start();
    upload_seeds(&moto);
    moto.create_bucket("quern-wh");
    // Every third request through the proxy gets a 503.
    let proxy = FaultProxy::start(moto.port, 503, 3);
    let project = s3_project(proxy.port, "quern-wh");
    assert_ok(&quern_s3(
        &project,
        &["run", "events", "--ds", "2024-03-01"],
    ));
    assert!(proxy.faults_served.load(Ordering::SeqCst) > 3);
    assert_eq!(
        query_s3(&project, "SELECT count(*) AS n FROM events.events_by_day"),
        "n\n18\n"
    );
}

#[test]
fn a_task_failing_transiently_is_retried_and_each_attempt_is_logged() {
    let moto = Moto::start();
    upload_seeds(&moto);
    moto.create_bucket("quern-wh");
    // The first two commits of events_by_day get a 503, and the store itself does not
    // retry (max_retries = 0): the task fails twice, then its third attempt commits.
    let proxy = FaultProxy::failing(
        moto.port,
        503,
        "PUT /quern-wh/warehouse/events/events_by_day/_delta_log/",
        2,
    );
    let project = s3_project(proxy.port, "quern-wh");
    let env = project.read("environments/s3.toml");
    project.write(
        "environments/s3.toml",
        &env.replace("[storage]\n", "[storage]\nmax_retries = \"0\"\n"),
    );
    let toml = project.read("sql/events/pipeline.toml").replace(
        "[tasks.events_by_day]\n",
        "[tasks.events_by_day]\nretries = 3\nretry_delay = \"50ms\"\n",
    );
    project.write("sql/events/pipeline.toml", &toml);
    let out = quern_s3(&project, &["run", "events", "--ds", "2024-03-01"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("attempt 1 failed, retried: ") && text.contains("attempt 2 failed"),
        "{text}"
    );
    assert!(text.contains("503"), "{text}");
    assert_eq!(proxy.faults_served.load(Ordering::SeqCst), 2);
    assert_eq!(
        query_s3(
            &project,
            "SELECT attempt, status, error IS NOT NULL AS has_error FROM _quern.tasks WHERE task = 'events_by_day' ORDER BY attempt"
        ),
        "attempt,status,has_error\n1,retried,true\n2,retried,true\n3,succeeded,false\n"
    );
    assert_eq!(
        query_s3(&project, "SELECT count(*) AS n FROM events.events_by_day"),
        "n\n18\n"
    );

    // A task without retries fails at the first transient error.
    let proxy = FaultProxy::failing(
        moto.port,
        503,
        "PUT /quern-wh-2/warehouse/events/events_by_day/_delta_log/",
        1,
    );
    let project = s3_project(proxy.port, "quern-wh-2");
    moto.create_bucket("quern-wh-2");
    let project_env = project.read("environments/s3.toml");
    project.write(
        "environments/s3.toml",
        &project_env.replace("[storage]\n", "[storage]\nmax_retries = \"0\"\n"),
    );
    let out = quern_s3(&project, &["run", "events", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn stalled_reads_time_out_and_are_retried() {
    let moto = Moto::start();
    upload_seeds(&moto);
    moto.create_bucket("quern-wh");
    let proxy = FaultProxy::start(moto.port, 0, 9);
    let project = s3_project(proxy.port, "quern-wh");
    project.write(
        "environments/s3.toml",
        &project
            .read("environments/s3.toml")
            .replace("[storage]\n", "[storage]\ntimeout = \"1s\"\n"),
    );
    assert_ok(&quern_s3(
        &project,
        &["run", "events", "--ds", "2024-03-01"],
    ));
    assert!(proxy.faults_served.load(Ordering::SeqCst) > 0);
    assert_eq!(
        query_s3(&project, "SELECT count(*) AS n FROM events.events_by_day"),
        "n\n18\n"
    );
    // And rendering never resolves the secret, let alone prints it.
    assert_ok(&quern_s3(&project, &["render", "events"]));
}

#[test]
fn permanent_errors_fail_at_once_with_the_uri() {
    let moto = Moto::start();
    upload_seeds(&moto);
    // No warehouse bucket.
    let project = s3_project(moto.port, "no-such-bucket");
    let out = quern_s3(&project, &["run", "events", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("s3://no-such-bucket/warehouse/events/events_by_day/"),
        "{text}"
    );
    assert!(!text.contains(SECRET));

    // Access denied is not retried: the proxy sees each refused request once.
    moto.create_bucket("quern-wh");
    let proxy = FaultProxy::start(moto.port, 403, 1);
    let project = s3_project(proxy.port, "quern-wh");
    let out = quern_s3(&project, &["run", "events", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("s3://quern-raw/events/raw_events.csv") || text.contains("s3://quern-wh/"),
        "{text}"
    );
    let requests = proxy.requests.lock().unwrap().clone();
    let mut distinct = requests.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        requests.len(),
        distinct.len(),
        "a 403 was retried: {requests:?}"
    );
}

/// Writes `environments/<name>.toml`: the s3 environment with another warehouse root.
fn write_env(project: &TempProject, name: &str, root: &str) {
    let text = project.read("environments/s3.toml").replace(
        "root = \"s3://quern-wh/warehouse\"",
        &format!("root = \"{root}\""),
    );
    project.write(&format!("environments/{name}.toml"), &text);
}

#[test]
fn partitions_sources_and_the_environment_guard_on_s3() {
    let moto = Moto::start();
    upload_seeds(&moto);
    for bucket in ["quern-wh", "acme-alpha", "acme-prod"] {
        moto.create_bucket(bucket);
    }
    let project = s3_project(moto.port, "quern-wh");

    // Several partition columns: the second run replaces only the partitions it writes.
    project.write(
        "sql/events/pipeline.toml",
        &format!(
            "{}\n[tasks.daily]\nmaterialized = \"partition\"\npartition_by = [\"day\", \"kind\"]\n",
            project.read("sql/events/pipeline.toml")
        ),
    );
    project.write(
        "sql/events/daily.sql",
        "SELECT * FROM (VALUES\n  (DATE '{{ prev_ds }}', 'a', '{{ ds }}'), (DATE '{{ ds }}', 'a', '{{ ds }}'), (DATE '{{ ds }}', 'b', '{{ ds }}')\n) AS t(day, kind, written_by)",
    );
    for ds in ["2024-03-02", "2024-03-03"] {
        assert_ok(&quern_s3(
            &project,
            &["run", "events", "--ds", ds, "--select", "daily"],
        ));
    }
    assert_eq!(query_s3(&project, "SELECT day, kind, written_by FROM events.daily ORDER BY day, kind"),
        "day,kind,written_by\n2024-03-01,a,2024-03-02\n2024-03-02,a,2024-03-03\n2024-03-02,b,2024-03-02\n2024-03-03,a,2024-03-03\n2024-03-03,b,2024-03-03\n"
    );
    assert!(moto
        .keys("quern-wh", "warehouse/events/daily/day=2024-03-02/kind=b/")
        .iter()
        .any(|k| k.ends_with(".parquet")));

    // Sources on S3: a Delta table pinned to its first version, and Parquet.
    let parquet = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let ctx = quern::datafusion::prelude::SessionContext::new();
            ctx.sql(&format!("COPY (SELECT * FROM (VALUES (1, 'x'), (2, 'y')) AS t(id, name)) TO '{}' STORED AS PARQUET", path.display()))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
        });
        std::fs::read(&path).unwrap()
    };
    moto.put("quern-raw", "ext/names/part-0.parquet", &parquet);
    project.write(
        "environments/s3.toml",
        &format!(
            "{}\n[sources.ext]\ndaily_v0 = {{ uri = \"s3://quern-wh/warehouse/events/daily\", format = \"delta\", version = 0 }}\nnames = {{ uri = \"s3://quern-raw/ext/names/\", format = \"parquet\" }}\n",
            project.read("environments/s3.toml")
        ),
    );
    assert_eq!(query_s3(&project, "SELECT (SELECT count(*) FROM ext.daily_v0) AS v0, (SELECT count(*) FROM ext.names) AS names"), "v0,names\n3,2\n");

    // alpha and prod on two buckets of the same server: alpha writes only to its own…
    write_env(&project, "prod", "s3://acme-prod/warehouse");
    write_env(&project, "alpha", "s3://acme-alpha/warehouse");
    let alpha = |args: &[&str]| s3_command(&project, "alpha", args).output().unwrap();
    assert_ok(&alpha(&["run", "events", "--ds", "2024-03-01"]));
    assert!(!moto.keys("acme-alpha", "warehouse/events/").is_empty());
    assert!(moto.keys("acme-prod", "").is_empty());
    // …and its root copied by mistake under prod's is refused before anything runs.
    write_env(&project, "alpha", "s3://acme-prod/warehouse/alpha");
    let out = alpha(&["run", "events", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("would write s3://acme-prod/warehouse/alpha/events/"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("never under environment `prod`'s root s3://acme-prod/warehouse/"),
        "{}",
        stderr(&out)
    );
    assert!(moto.keys("acme-prod", "").is_empty());
}

#[test]
fn a_writer_killed_mid_write_on_s3_leaves_the_previous_version() {
    let moto = Moto::start();
    upload_seeds(&moto);
    moto.create_bucket("quern-wh");
    let project = s3_project(moto.port, "quern-wh");
    project.write(
        "sql/events/big.sql",
        "SELECT value AS id, value % 7 AS k FROM range(0, {{ var('n', 1000) }})",
    );
    let run = |n: &str| {
        quern_s3(
            &project,
            &[
                "run",
                "events",
                "--ds",
                "2024-01-01",
                "--select",
                "big",
                "--var",
                &format!("n={n}"),
            ],
        )
    };
    assert_ok(&run("1000"));

    let mut child = s3_command(
        &project,
        "s3",
        &[
            "run",
            "events",
            "--ds",
            "2024-01-01",
            "--select",
            "big",
            "--var",
            "n=400000000",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Let it plan and stream data for a while (400M rows take far longer), then SIGKILL.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the write finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let count = || query_s3(&project, "SELECT count(*) AS n FROM events.big");
    assert_eq!(count(), "n\n1000\n");
    let logs = moto.keys("quern-wh", "warehouse/events/big/_delta_log/");
    assert_eq!(
        logs.iter().filter(|k| k.ends_with(".json")).count(),
        1,
        "{logs:?}"
    );
    assert_ok(&run("2500"));
    assert_eq!(count(), "n\n2500\n");
}
