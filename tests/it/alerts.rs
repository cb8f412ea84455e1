//! Alerts against real listeners on loopback started by the test: an HTTP receiver
//! that records webhook posts, and a small SMTP server that records messages (or
//! refuses them).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::common::{stderr, stdout, TempProject};

/// Records the bodies POSTed to it and answers 200.
pub(crate) struct Receiver {
    pub(crate) port: u16,
    pub(crate) bodies: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).unwrap_or(0) == 0 {
                        break;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = conn.read_exact(&mut body);
                seen.lock()
                    .unwrap()
                    .push((head, String::from_utf8_lossy(&body).to_string()));
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Receiver { port, bodies }
    }
}

/// A minimal SMTP server: accepts one message per connection, or refuses recipients.
struct SmtpSink {
    port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    fn start(refuse: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let seen = messages.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut out = conn.try_clone().unwrap();
                let mut reader = BufReader::new(conn);
                let _ = out.write_all(b"220 sink ESMTP\r\n");
                let mut data = String::new();
                let mut in_data = false;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            seen.lock().unwrap().push(std::mem::take(&mut data));
                            let _ = out.write_all(b"250 queued\r\n");
                        } else {
                            data.push_str(&line);
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "RCPT" if refuse => b"550 mailbox unavailable\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = out.write_all(b"221 bye\r\n");
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    let _ = out.write_all(reply);
                }
            }
        });
        SmtpSink { port, messages }
    }
}

/// The example project with the metric's minimum raised (so a run breaches) and the
/// given alert targets in the local environment.
fn project(alerts: &str) -> TempProject {
    let project = TempProject::new();
    project.write(
        "sql/events/pipeline.toml",
        &project
            .read("sql/events/pipeline.toml")
            .replace("min = 1\n", "min = 100\n"),
    );
    project.write(
        "environments/local.toml",
        &format!("{}\n{alerts}\n", project.read("environments/local.toml")),
    );
    project
}

#[test]
fn breaches_and_failures_reach_the_webhook_and_the_mailbox() {
    let receiver = Receiver::start();
    let smtp = SmtpSink::start(false);
    let project = project(&format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hooks/${{QUERN_TEST_HOOK_TOKEN}}\"\n\n[[alerts]]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"quern <quern@example.com>\"\nto = [\"data-team@example.com\"]\non = [\"breach\", \"failure\", \"success\"]\n",
        receiver.port, smtp.port
    ));
    let run = |ds: &str| {
        project
            .command(&["run", "events", "--ds", ds])
            .env("QUERN_TEST_HOOK_TOKEN", "T0KEN-secret")
            .output()
            .unwrap()
    };
    let out = run("2024-03-01");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("alert   webhook: sent")
            && text.contains("alert   email to data-team@example.com: sent"),
        "{text}"
    );
    assert!(!text.contains("T0KEN-secret"));

    let bodies = receiver.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let (head, body) = &bodies[0];
    assert!(
        head.starts_with("POST /hooks/T0KEN-secret HTTP/1.1"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert!(
        body.starts_with(
            "{\"text\":\"quern [local] events ds 2024-03-01: run succeeded, metric breach"
        ),
        "{body}"
    );
    assert!(
        body.contains("metric active_users = 15 (previous none): 15 is below the minimum 100"),
        "{body}"
    );

    let mails = smtp.messages.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0]
            .contains("Subject: quern [local] events ds 2024-03-01: run succeeded, metric breach"),
        "{}",
        mails[0]
    );
    assert!(
        mails[0].contains("To: data-team@example.com"),
        "{}",
        mails[0]
    );
    assert!(
        mails[0].contains("15 is below the minimum 100"),
        "{}",
        mails[0]
    );

    // A failed task: the message names it and the error; the previous value shows.
    project.write(
        "sql/events/events_by_day.sql",
        &project
            .read("sql/events/events_by_day.sql")
            .replace("e.event_id,", "CAST(e.user_id AS BIGINT) AS event_id,"),
    );
    let out = run("2024-03-02");
    assert_eq!(out.status.code(), Some(1));
    let bodies = receiver.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert!(
        bodies[1].1.contains("run FAILED") && bodies[1].1.contains("task events_by_day failed"),
        "{}",
        bodies[1].1
    );
    assert_eq!(smtp.messages.lock().unwrap().len(), 2);
}

#[test]
fn an_undeliverable_alert_is_reported_and_the_run_keeps_its_results() {
    // Nothing listens on this port, and this SMTP server refuses the recipient.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let smtp = SmtpSink::start(true);
    let project = project(&format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{closed}/hook\"\n\n[[alerts]]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"quern@example.com\"\nto = [\"nobody@example.com\"]\n",
        smtp.port
    ));
    let out = project.quern(&["run", "events", "--ds", "2024-03-01"]);
    assert!(
        out.status.success(),
        "a failed delivery does not fail the run: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("warning: alert webhook not delivered after 3 attempts"),
        "{text}"
    );
    assert!(text.contains("warning: alert email to nobody@example.com not delivered after 3 attempts: SMTP 127.0.0.1"), "{text}");
    assert!(smtp.messages.lock().unwrap().is_empty());
    assert_eq!(
        project.query_csv("SELECT count(*) AS n FROM events.daily_active_users"),
        "n\n4\n"
    );
}

#[test]
fn alert_settings_are_checked() {
    let project = project("[[alerts]]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\n");
    let out = project.quern(&["run", "events", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("environments/local.toml: key `alerts[0]`: an email alert needs `smtp_host`, `from` and `to`"), "{}", stderr(&out));
}
