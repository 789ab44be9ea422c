//! The real binary, as the README runs it: `hookbeat serve` on SQLite, and `hookbeat migrate` +
//! `hookbeat api` + `hookbeat worker` as separate processes on PostgreSQL. These run the real
//! worker loop on the real clock, so they wait with the one polling helper.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::db::{Backend, TestDb};
use crate::helpers::{eventually, Receiver};

const SECRET: &str = "end-to-end-secret-at-least-32-characters";

/// A hookbeat process, killed when dropped.
struct Process {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Process {
    fn spawn(database_url: &str, args: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookbeat"))
            .args([
                "--database-url",
                database_url,
                "--log-format",
                "json",
                "--allow-private-targets",
            ])
            .args(args)
            .env("HOOKBEAT_JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting hookbeat");
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Process { child, stderr }
    }

    /// The API's address, from its "listening" log line.
    fn address(&self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let Ok(line) = self.stderr.recv_timeout(left) else {
                break;
            };
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                if let Some(address) = event["address"].as_str() {
                    return address.to_owned();
                }
            }
        }
        panic!("hookbeat did not log its address");
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("sending SIGTERM");
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hookbeat did not stop within 15 s of SIGTERM");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(database_url: &str, tenant: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hookbeat"))
        .args(["--database-url", database_url, "token", "--tenant", tenant])
        .env("HOOKBEAT_JWT_SECRET", SECRET)
        .output()
        .expect("running hookbeat token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Creates a 1-second schedule through the API and waits for two deliveries.
async fn one_second_schedule_is_delivered(address: &str, token: &str) {
    let receiver = Receiver::start();
    let created = reqwest::Client::new()
        .post(format!("{address}/v1/schedules"))
        .bearer_auth(token)
        .json(&json!({
            "name": "every-second",
            "schedule": {"kind": "interval", "every_seconds": 1},
            "target": {"url": format!("{}/tick", receiver.url)}
        }))
        .send()
        .await
        .expect("creating the schedule");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let delivered = eventually(Duration::from_secs(15), || {
        let receiver = receiver.clone();
        async move { (receiver.received().len() >= 2).then_some(()) }
    })
    .await;
    assert!(
        delivered.is_some(),
        "two deliveries within 15 s; got {}",
        receiver.received().len()
    );
    let got = receiver.received();
    assert_ne!(
        got[0].header("webhook-id"),
        got[1].header("webhook-id"),
        "one run per fire"
    );
    assert!(got.iter().all(|r| r.path == "/tick"));
}

#[tokio::test]
async fn serve_on_sqlite_delivers_and_stops_gracefully() {
    let db = TestDb::new(Backend::Sqlite)
        .await
        .expect("SQLite is always there");
    let serve = Process::spawn(&db.url, &["--listen", "127.0.0.1:0", "serve"]);
    let address = serve.address();
    let token = token(&db.url, "demo");
    one_second_schedule_is_delivered(&address, &token).await;
    assert!(serve.terminate().success(), "exit 0 after SIGTERM");
}

#[tokio::test]
async fn api_and_worker_processes_on_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let migrate = Command::new(env!("CARGO_BIN_EXE_hookbeat"))
        .args(["--database-url", &db.url, "migrate"])
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let api = Process::spawn(&db.url, &["--listen", "127.0.0.1:0", "api"]);
    let worker = Process::spawn(&db.url, &["worker"]);
    let address = api.address();
    let token = token(&db.url, "split");
    one_second_schedule_is_delivered(&address, &token).await;
    assert!(worker.terminate().success());
    assert!(api.terminate().success());
}
