//! The binary's one-shot commands, run as a user would: output on stdout, errors on stderr
//! with a non-zero exit.

use std::process::Command;

fn hookbeat(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hookbeat"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("HOOKBEAT_JWT_SECRET")
        .output()
        .expect("running hookbeat")
}

/// Runs `hookbeat preview` with `args`, expecting success, and returns its stdout.
fn preview_ok(args: &[&str]) -> String {
    let out = hookbeat(&[&["preview"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One line of JSON on stdout.
fn preview_json(args: &[&str]) -> serde_json::Value {
    let out = preview_ok(args);
    assert_eq!(out.matches('\n').count(), 1, "{out}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn preview_prints_the_next_fires() {
    let fires = preview_json(&[
        "--after",
        "2030-01-01T00:00:00Z",
        "--count",
        "3",
        r#"{"kind":"interval","every_seconds":60}"#,
    ]);
    assert_eq!(
        fires["fire_times"],
        serde_json::json!([
            "2030-01-01T00:01:00Z",
            "2030-01-01T00:02:00Z",
            "2030-01-01T00:03:00Z"
        ])
    );
    assert_eq!(
        fires["fires"][0],
        serde_json::json!({"at": "2030-01-01T00:01:00Z", "local_time": "2030-01-01T00:01:00", "utc_offset": "+00:00"})
    );
}

#[test]
fn preview_handles_crontab_in_a_time_zone() {
    let spec = r#"{"kind":"crontab","expression":"30 2 * * *","timezone":"Europe/Berlin"}"#;
    let fires = preview_json(&["--after", "2030-03-30T12:00:00Z", "--count", "2", spec]);
    assert_eq!(
        fires["fire_times"],
        serde_json::json!(["2030-03-31T01:00:00Z", "2030-04-01T00:30:00Z"])
    );
    // 02:30 did not exist on 31 March: the fire moved past the gap, and says so.
    assert_eq!(
        fires["fires"],
        serde_json::json!([
            {"at": "2030-03-31T01:00:00Z", "local_time": "2030-03-31T03:00:00", "utc_offset": "+02:00", "dst": "gap_shifted"},
            {"at": "2030-04-01T00:30:00Z", "local_time": "2030-04-01T02:30:00", "utc_offset": "+02:00"}
        ])
    );
}

#[test]
fn preview_refuses_an_invalid_spec_on_stderr() {
    for (spec, reason) in [
        (
            r#"{"kind":"interval","every_seconds":0}"#,
            "schedule.every_seconds: must be at least 1",
        ),
        (r#"{"kind":"weekly"}"#, "schedule.kind: unknown kind"),
        ("{not json", "not valid JSON"),
        (
            r#"{"kind":"crontab","expression":"60 * * * *"}"#,
            "schedule.expression: minute 60 is out of range 0-59",
        ),
    ] {
        let out = hookbeat(&["preview", spec]);
        assert!(!out.status.success(), "{spec} should fail");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(reason), "{spec}: {stderr}");
    }
    let out = hookbeat(&[
        "preview",
        "--count",
        "1001",
        r#"{"kind":"interval","every_seconds":1}"#,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1001"));
}

#[test]
fn token_prints_only_a_jwt_and_validates_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let out = hookbeat(&["--database-url", &url, "token", "--tenant", "demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the token on stdout: {stdout:?}");
    assert_eq!(lines[0].split('.').count(), 3, "a JWT");

    let bad_scope = hookbeat(&[
        "--database-url",
        &url,
        "token",
        "--tenant",
        "demo",
        "--scope",
        "root",
    ]);
    assert!(!bad_scope.status.success());
    assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("unknown scope"));
    let bad_ttl = hookbeat(&[
        "--database-url",
        &url,
        "token",
        "--tenant",
        "demo",
        "--ttl",
        "forever",
    ]);
    assert!(!bad_ttl.status.success());
    assert!(String::from_utf8_lossy(&bad_ttl.stderr).contains("--ttl"));
}

#[test]
fn postgres_without_a_jwt_secret_is_refused() {
    let out = hookbeat(&[
        "--database-url",
        "postgres://postgres@127.0.0.1:1/none",
        "api",
    ]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}
