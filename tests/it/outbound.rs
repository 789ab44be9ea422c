//! Outbound requests reach only global unicast addresses: proxy variables in the worker's
//! environment do not carry a delivery past the address guard, special-purpose addresses and
//! reserved or repeated header names are refused when a schedule is saved, and a tenant is never
//! told what an internal name resolved to (the server's log keeps it).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::app::spawn_app_with;
use crate::helpers::db::TestDb;
use crate::helpers::process::{token, Process, PROXY_VARIABLES};
use crate::helpers::{eventually, Backend, Receiver};
use crate::on_both_databases;

/// An HTTP proxy on 127.0.0.1:0 that forwards nothing: it records the first line of every
/// connection it accepts (`POST http://name:port/… HTTP/1.1`, `CONNECT name:443 …`) and answers
/// 200, so a delivery sent through it would look delivered.
struct RecordingProxy {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RecordingProxy {
    async fn start() -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the recording proxy");
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut head = vec![0u8; 8 * 1024];
                    let read =
                        tokio::time::timeout(Duration::from_secs(5), connection.read(&mut head))
                            .await;
                    let first_line = match read {
                        Ok(Ok(n)) => String::from_utf8_lossy(&head[..n])
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                        _ => "<a connection that sent nothing>".to_owned(),
                    };
                    record.lock().unwrap().push(first_line);
                    let _ = connection
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        RecordingProxy { address, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A host name that passes the checks made when a schedule is saved (it is not `localhost` or
/// `*.localhost`) but resolves, here, only to loopback addresses, with those addresses: the
/// machine's own name or one of the aliases distributions put in /etc/hosts.
async fn a_name_resolving_to_loopback() -> (String, Vec<IpAddr>) {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let candidates = [
        hostname.trim(),
        "localhost.localdomain",
        "localhost4",
        "localhost6",
        "ip6-localhost",
        "ip6-loopback",
    ];
    for name in candidates.into_iter().filter(|name| !name.is_empty()) {
        let url = url::Url::parse(&format!("http://{name}/")).unwrap();
        if hookbeat_scheduler::ssrf::check_url_host(&url, false).is_err() {
            continue;
        }
        let Ok(resolved) = tokio::net::lookup_host((name, 0)).await else {
            continue;
        };
        let mut addresses: Vec<IpAddr> = resolved.map(|a| a.ip()).collect();
        addresses.sort();
        addresses.dedup();
        if !addresses.is_empty() && addresses.iter().all(IpAddr::is_loopback) {
            return (name.to_owned(), addresses);
        }
    }
    panic!(
        "none of {candidates:?} resolves only to loopback addresses on this machine; \
         add one to /etc/hosts (e.g. `127.0.0.1 localhost.localdomain`)"
    );
}

/// The real binary, with every proxy variable pointing at a recording proxy, delivers to a name
/// that resolves to loopback: the delivery goes neither through the proxy (which would resolve
/// the name itself, past the guard) nor to the loopback receiver. The run fails with an error
/// that says why without naming the address; the server's log names it.
async fn proxy_variables_do_not_carry_deliveries_past_the_guard(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let (name, addresses) = a_name_resolving_to_loopback().await;
    let proxy = RecordingProxy::start().await;
    let receiver = Receiver::start();
    let port = receiver.url.rsplit(':').next().unwrap();
    let proxy_url = format!("http://{}", proxy.address);
    let env: Vec<(&str, &str)> = PROXY_VARIABLES
        .iter()
        .filter(|variable| !variable.eq_ignore_ascii_case("no_proxy"))
        .map(|variable| (*variable, proxy_url.as_str()))
        .collect();
    let serve = Process::spawn_guarded(&db.url, &["--listen", "127.0.0.1:0", "serve"], &env);
    let address = serve.address();
    let token = token(&db.url, "outbound");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let created = http
        .post(format!("{address}/v1/schedules"))
        .bearer_auth(&token)
        .json(&json!({
            "name": "to-loopback",
            "schedule": {"kind": "interval", "every_seconds": 1},
            "target": {"url": format!("http://{name}:{port}/hook")},
            "retry": {"max_attempts": 1}
        }))
        .send()
        .await
        .expect("creating the schedule");
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{name} passes creation: {}",
        created.text().await.unwrap()
    );
    let finished = eventually(Duration::from_secs(20), || {
        let http = http.clone();
        let (address, token) = (address.clone(), token.clone());
        async move {
            let runs: Value = http
                .get(format!("{address}/v1/runs"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            runs["items"]
                .as_array()?
                .iter()
                .find(|run| !run["finished_at"].is_null())
                .cloned()
        }
    })
    .await
    .expect("a run finished within 20 s");

    assert_eq!(
        proxy.seen(),
        Vec::<String>::new(),
        "nothing went through the proxy"
    );
    assert!(
        receiver.received().is_empty(),
        "nothing reached the loopback receiver"
    );
    assert_eq!(finished["status"], "failed", "{finished}");
    let detail: Value = http
        .get(format!(
            "{address}/v1/runs/{}",
            finished["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for error in [&detail["last_error"], &detail["attempts"][0]["error"]] {
        assert!(
            error
                .as_str()
                .is_some_and(|e| e.contains("resolves only to forbidden addresses")),
            "{detail}"
        );
    }
    let shown = detail.to_string();
    for ip in &addresses {
        assert!(
            !shown.contains(&ip.to_string()),
            "the tenant is not told that {name} resolves to {ip}: {detail}"
        );
    }
    assert!(!shown.contains("127.0.0.1"), "{detail}");

    let (_, logs) = serve.terminate_with_logs();
    assert!(
        logs.iter().any(|line| line.contains("WARN")
            && line.contains(&name)
            && addresses.iter().any(|ip| line.contains(&ip.to_string()))),
        "the server's log names what {name} resolved to: {logs:#?}"
    );
}

/// The addresses of issue #15, once accepted, and header names that are reserved or repeat one
/// another in a different case, are a 422 naming the field.
async fn special_purpose_targets_and_repeated_headers_are_refused(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |options| options.allow_private_targets = false).await
    else {
        return;
    };
    let schedule = |target: Value| {
        json!({
            "name": "refused",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": target
        })
    };
    let mut cases: Vec<(Value, &str)> = [
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b:1::7f00:1]/",
        "http://[fec0::1]/",
        "http://192.0.0.192/",
        "http://198.18.0.1/",
    ]
    .into_iter()
    .map(|url| (json!({ "url": url }), "target.url"))
    .collect();
    cases.push((
        json!({"url": "https://example.com/", "headers": {"X-A": "1", "x-a": "2"}}),
        "target.headers.X-A",
    ));
    cases.push((
        json!({"url": "https://example.com/", "headers": {"Proxy-Authorization": "Basic eA=="}}),
        "target.headers.Proxy-Authorization",
    ));
    cases.push((
        json!({"url": "https://example.com/", "headers": {"Webhook-Foo": "1"}}),
        "target.headers.Webhook-Foo",
    ));
    for (target, field) in cases {
        let answer = app.post("/v1/schedules", schedule(target.clone())).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{target} -> {}",
            answer.body
        );
        assert_eq!(answer.header("content-type"), "application/problem+json");
        let fields = answer.error_fields();
        assert_eq!(fields, vec![field], "{target} -> {}", answer.body);
    }
    assert_eq!(app.get("/v1/schedules").await.body["items"], json!([]));
}

on_both_databases!(
    proxy_variables_do_not_carry_deliveries_past_the_guard,
    special_purpose_targets_and_repeated_headers_are_refused,
);
