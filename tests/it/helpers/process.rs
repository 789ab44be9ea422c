//! hookbeat as separate processes: the real binary, started, stopped with SIGTERM, or killed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const SECRET: &str = "end-to-end-secret-at-least-32-characters";

/// The environment variables through which HTTP clients (reqwest among them) pick up a proxy.
pub const PROXY_VARIABLES: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A hookbeat process, killed when dropped.
pub struct Process {
    child: Child,
    stderr: mpsc::Receiver<String>,
    /// The log lines read so far (looking for the address reads some).
    seen: std::cell::RefCell<Vec<String>>,
}

impl Process {
    pub fn spawn(database_url: &str, args: &[&str]) -> Process {
        Self::spawn_logging(database_url, args, "info")
    }

    /// Spawns with `RUST_LOG` set to `filter`.
    pub fn spawn_logging(database_url: &str, args: &[&str], filter: &str) -> Process {
        let mut command = Self::command(database_url, filter);
        command.arg("--allow-private-targets").args(args);
        Self::start(command)
    }

    /// Spawns without `--allow-private-targets`, as production runs, with `env` added to the
    /// process's environment (the test process's own proxy variables removed first).
    pub fn spawn_guarded(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut command = Self::command(database_url, "info");
        command
            .args(args)
            .env_remove("HOOKBEAT_ALLOW_PRIVATE_TARGETS");
        for variable in PROXY_VARIABLES {
            command.env_remove(variable);
        }
        command.envs(env.iter().copied());
        Self::start(command)
    }

    fn command(database_url: &str, filter: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookbeat"));
        command
            .args(["--database-url", database_url, "--log-format", "json"])
            .env("HOOKBEAT_JWT_SECRET", SECRET)
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn start(mut command: Command) -> Process {
        let mut child = command.spawn().expect("starting hookbeat");
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Process {
            child,
            stderr,
            seen: Default::default(),
        }
    }

    /// The API's address, from its "listening" log line.
    pub fn address(&self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let Ok(line) = self.stderr.recv_timeout(left) else {
                break;
            };
            self.seen.borrow_mut().push(line.clone());
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                if let Some(address) = event["address"].as_str() {
                    return address.to_owned();
                }
            }
        }
        panic!("hookbeat did not log its address");
    }

    /// SIGTERM, then the exit status and every line the process logged.
    pub fn terminate_with_logs(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = self.stop();
        let mut lines = self.seen.take();
        // The reader thread ends when the pipe closes with the process.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        (status, lines)
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.stop()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
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

impl Process {
    /// SIGKILL: the process gets no chance to clean up, as in a crash.
    pub fn kill(mut self) {
        self.child.kill().expect("killing hookbeat");
        self.child.wait().ok();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn token(database_url: &str, tenant: &str) -> String {
    token_with_scope(database_url, tenant, "schedules:read schedules:write")
}

pub fn token_with_scope(database_url: &str, tenant: &str, scope: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hookbeat"))
        .args([
            "--database-url",
            database_url,
            "token",
            "--tenant",
            tenant,
            "--scope",
            scope,
        ])
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
