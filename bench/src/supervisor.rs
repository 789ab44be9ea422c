//! Child processes: starting them, noticing when they die, and stopping them (SIGTERM, then
//! SIGKILL after a timeout) so that no run leaves a process behind.
//!
//! Three layers make sure of it: the bench stops every child at the end of a run, on error and
//! on Ctrl-C; dropping the [`Supervisor`] kills whatever is left; and each child is started
//! through `setpriv --pdeathsig TERM` (when the machine has it), so the kernel signals it even
//! if the bench itself is killed outright. The parent-death signal fires when the *thread* that
//! forked the child exits, so every child is forked by one dedicated thread that lives exactly
//! as long as the supervisor (a tokio worker or blocking thread might exit earlier).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SETPRIV: &str = "/usr/bin/setpriv";
/// How often a waiting caller looks at a child again.
const POLL: Duration = Duration::from_millis(20);

/// What to run, and where its output goes.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_remove: Vec<String>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

struct SpawnRequest {
    command: Command,
    reply: tokio::sync::oneshot::Sender<std::io::Result<Child>>,
}

struct Managed {
    name: String,
    child: Child,
    exited: Option<ExitStatus>,
}

pub struct Supervisor {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    forker: Option<std::thread::JoinHandle<()>>,
    children: Mutex<Vec<Managed>>,
    pdeathsig: bool,
}

impl Supervisor {
    pub fn new() -> anyhow::Result<Self> {
        let (requests, inbox) = mpsc::channel::<SpawnRequest>();
        let forker = std::thread::Builder::new()
            .name("bench-forker".to_owned())
            .spawn(move || {
                for mut request in inbox {
                    let spawned = request.command.spawn();
                    // The caller gave up waiting (Ctrl-C): nobody will stop this child, and a
                    // std `Child` does not kill on drop, so kill it here.
                    if let Err(Ok(mut child)) = request.reply.send(spawned) {
                        child.kill().ok();
                        child.wait().ok();
                    }
                }
            })
            .context("starting the forker thread")?;
        Ok(Self {
            requests: Some(requests),
            forker: Some(forker),
            children: Mutex::new(Vec::new()),
            pdeathsig: Path::new(SETPRIV).exists(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Managed>> {
        self.children.lock().expect("supervisor poisoned")
    }

    /// Starts a process and returns its pid.
    pub async fn spawn(&self, spec: &ProcessSpec) -> anyhow::Result<u32> {
        let mut command = if self.pdeathsig {
            // setpriv execs the program, so the pid stays the program's own.
            let mut command = Command::new(SETPRIV);
            command
                .args(["--pdeathsig", "TERM", "--"])
                .arg(&spec.program);
            command
        } else {
            Command::new(&spec.program)
        };
        command
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(create(&spec.stdout)?)
            .stderr(create(&spec.stderr)?);
        for name in &spec.env_remove {
            command.env_remove(name);
        }
        command.envs(spec.env.iter().map(|(k, v)| (k, v)));
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests
            .as_ref()
            .context("the supervisor is shutting down")?
            .send(SpawnRequest { command, reply })
            .ok()
            .context("the forker thread is gone")?;
        let child = answer
            .await
            .context("the forker thread is gone")?
            .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
        let pid = child.id();
        self.lock().push(Managed {
            name: spec.name.clone(),
            child,
            exited: None,
        });
        Ok(pid)
    }

    /// The exit status of `name` if it has exited.
    pub fn exited(&self, name: &str) -> Option<ExitStatus> {
        let mut children = self.lock();
        let managed = children.iter_mut().find(|m| m.name == name)?;
        poll(managed)
    }

    /// Waits up to `timeout` for `name` to exit by itself; kills it when the time is up.
    pub async fn wait(&self, name: &str, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited(name) {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.stop_where(|n| n == name, Duration::ZERO).await;
                anyhow::bail!("{name} did not finish within {timeout:?}; killed");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the processes whose name satisfies `which`: SIGTERM, then SIGKILL for any still
    /// running after `grace`. Returns the names of those that needed the SIGKILL.
    pub async fn stop_where(&self, which: impl Fn(&str) -> bool, grace: Duration) -> Vec<String> {
        let pids: Vec<u32> = {
            let mut children = self.lock();
            children
                .iter_mut()
                .filter_map(|m| (which(&m.name) && poll(m).is_none()).then(|| m.child.id()))
                .collect()
        };
        for pid in &pids {
            // ESRCH (already gone) is fine: the next poll reaps it.
            kill(Pid::from_raw(*pid as i32), Signal::SIGTERM).ok();
        }
        let deadline = Instant::now() + grace;
        loop {
            let running = {
                let mut children = self.lock();
                children
                    .iter_mut()
                    .filter_map(|m| {
                        (pids.contains(&m.child.id()) && poll(m).is_none()).then_some(())
                    })
                    .count()
            };
            if running == 0 {
                return Vec::new();
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let mut killed = Vec::new();
        let mut children = self.lock();
        for managed in children.iter_mut().filter(|m| pids.contains(&m.child.id())) {
            if poll(managed).is_none() {
                managed.child.kill().ok();
                managed.exited = managed.child.wait().ok();
                killed.push(managed.name.clone());
            }
        }
        killed
    }

    /// Names of the children that are still running.
    pub fn running(&self) -> Vec<String> {
        let mut children = self.lock();
        children
            .iter_mut()
            .filter_map(|m| poll(m).is_none().then(|| m.name.clone()))
            .collect()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Last resort: whatever a normal stop did not end is killed now.
        if let Ok(children) = self.children.get_mut() {
            for managed in children.iter_mut() {
                if poll(managed).is_none() {
                    managed.child.kill().ok();
                    managed.child.wait().ok();
                }
            }
        }
        drop(self.requests.take());
        if let Some(forker) = self.forker.take() {
            forker.join().ok();
        }
    }
}

fn poll(managed: &mut Managed) -> Option<ExitStatus> {
    if managed.exited.is_none() {
        managed.exited = managed.child.try_wait().ok().flatten();
    }
    managed.exited
}

fn create(path: &Path) -> anyhow::Result<File> {
    File::create(path).with_context(|| format!("creating {}", path.display()))
}
