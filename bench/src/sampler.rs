//! Resource sampling: once a second, the CPU time and resident memory of every process the bench
//! watches (hookbeat's API and workers, the PostgreSQL backends of the bench database, the bench
//! itself, which hosts the receiver) and the machine's CPU use, kept as time series and
//! summarised over a measurement window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::now_us;
use crate::procfs::{self, TICKS_PER_SECOND};

/// How often processes are read. One second keeps the sampler's own cost negligible (a few
/// dozen small file reads) while resolving phases of a one-minute run.
const PERIOD: Duration = Duration::from_secs(1);

/// Which processes a group covers.
#[derive(Debug, Clone)]
pub enum Watch {
    Pid(u32),
    /// Every process whose command line contains the text, looked up again at each sample
    /// (PostgreSQL backends come and go with the connection pools).
    Cmdline(String),
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tick {
    pub t_us: i64,
    /// CPU seconds used since the previous tick.
    pub cpu_s: f64,
    /// Wall seconds since the previous tick.
    pub wall_s: f64,
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub processes: usize,
}

struct Group {
    name: String,
    watch: Watch,
    last_ticks: HashMap<u32, u64>,
    ticks: Vec<Tick>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct MachineTick {
    pub t_us: i64,
    /// Share of all cores busy, 0–100.
    pub busy_pct: f64,
    pub load1: f64,
}

#[derive(Default)]
struct State {
    groups: Vec<Group>,
    machine: Vec<MachineTick>,
    last_machine: Option<(u64, u64)>,
    last_at: Option<Instant>,
}

/// A process group over a window.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub name: String,
    /// Highest resident set size seen over the whole run (summed over the group's processes).
    pub peak_rss_mib: f64,
    /// Highest resident anonymous (private) memory seen over the whole run.
    pub peak_anon_mib: f64,
    /// Mean CPU use over the window, in % of one core.
    pub avg_cpu_pct: f64,
    /// Busiest one-second sample in the window, in % of one core.
    pub peak_cpu_pct: f64,
    /// Most processes seen at once.
    pub max_processes: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct MachineSummary {
    pub avg_busy_pct: f64,
    pub peak_busy_pct: f64,
    pub max_load1: f64,
    /// CPU used by processes the bench does not watch (another user's builds, the kernel), in %
    /// of one core: what the machine was busy with besides the run.
    pub outside_cpu_pct: f64,
}

#[derive(Clone)]
pub struct Sampler {
    state: Arc<Mutex<State>>,
}

pub struct SamplerTask {
    handle: JoinHandle<()>,
    stop: CancellationToken,
}

impl SamplerTask {
    pub async fn stop(self) {
        self.stop.cancel();
        self.handle.await.ok();
    }
}

impl Sampler {
    /// Starts sampling at once and every [`PERIOD`] until the task is stopped.
    pub fn start() -> (Self, SamplerTask) {
        let sampler = Self {
            state: Arc::new(Mutex::new(State::default())),
        };
        let stop = CancellationToken::new();
        let handle = tokio::spawn({
            let sampler = sampler.clone();
            let stop = stop.clone();
            async move {
                let mut interval = tokio::time::interval(PERIOD);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = interval.tick() => sampler.sample_once(),
                    }
                }
            }
        });
        (sampler, SamplerTask { handle, stop })
    }

    /// Watches another group from the next sample on.
    pub fn watch(&self, name: impl Into<String>, watch: Watch) {
        self.lock().groups.push(Group {
            name: name.into(),
            watch,
            last_ticks: HashMap::new(),
            ticks: Vec::new(),
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("sampler state poisoned")
    }

    fn sample_once(&self) {
        let now = Instant::now();
        let t_us = now_us();
        let mut state = self.lock();
        let wall_s = state
            .last_at
            .map_or(PERIOD.as_secs_f64(), |last| (now - last).as_secs_f64());
        state.last_at = Some(now);
        for group in &mut state.groups {
            let pids = match &group.watch {
                Watch::Pid(pid) => vec![*pid],
                Watch::Cmdline(needle) => procfs::pids_with_cmdline(needle),
            };
            let mut tick = Tick {
                t_us,
                cpu_s: 0.0,
                wall_s,
                rss_kib: 0,
                anon_kib: 0,
                processes: 0,
            };
            let mut seen = HashMap::with_capacity(pids.len());
            for pid in pids {
                let Some(sample) = procfs::sample(pid) else {
                    continue;
                };
                // A process seen for the first time started during the bench (the sampler
                // starts before anything else), so all of its CPU time belongs to the run.
                let before = group.last_ticks.get(&pid).copied().unwrap_or(0);
                tick.cpu_s += sample.cpu_ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND;
                tick.rss_kib += sample.rss_kib;
                tick.anon_kib += sample.anon_kib;
                tick.processes += 1;
                seen.insert(pid, sample.cpu_ticks);
            }
            group.last_ticks = seen;
            group.ticks.push(tick);
        }
        if let Some((busy, total)) = procfs::machine_cpu() {
            if let Some((last_busy, last_total)) = state.last_machine {
                let dt = total.saturating_sub(last_total).max(1) as f64;
                state.machine.push(MachineTick {
                    t_us,
                    busy_pct: 100.0 * busy.saturating_sub(last_busy) as f64 / dt,
                    load1: procfs::load_average().unwrap_or(0.0),
                });
            }
            state.last_machine = Some((busy, total));
        }
    }

    /// Per-group figures: CPU over `[from_us, to_us]`, memory peaks over the whole run.
    pub fn summarise(&self, from_us: i64, to_us: i64) -> (Vec<GroupSummary>, MachineSummary) {
        let state = self.lock();
        let in_window = |t: i64| t > from_us && t <= to_us;
        let groups: Vec<GroupSummary> = state
            .groups
            .iter()
            .map(|g| {
                let window: Vec<&Tick> = g.ticks.iter().filter(|t| in_window(t.t_us)).collect();
                let cpu: f64 = window.iter().map(|t| t.cpu_s).sum();
                let wall: f64 = window.iter().map(|t| t.wall_s).sum();
                GroupSummary {
                    name: g.name.clone(),
                    peak_rss_mib: g.ticks.iter().map(|t| t.rss_kib).max().unwrap_or(0) as f64
                        / 1024.0,
                    peak_anon_mib: g.ticks.iter().map(|t| t.anon_kib).max().unwrap_or(0) as f64
                        / 1024.0,
                    avg_cpu_pct: if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 },
                    peak_cpu_pct: window
                        .iter()
                        .map(|t| 100.0 * t.cpu_s / t.wall_s.max(1e-3))
                        .fold(0.0, f64::max),
                    max_processes: g.ticks.iter().map(|t| t.processes).max().unwrap_or(0),
                }
            })
            .collect();
        let machine: Vec<&MachineTick> =
            state.machine.iter().filter(|m| in_window(m.t_us)).collect();
        let avg_busy_pct = if machine.is_empty() {
            0.0
        } else {
            machine.iter().map(|m| m.busy_pct).sum::<f64>() / machine.len() as f64
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let watched: f64 = groups.iter().map(|g: &GroupSummary| g.avg_cpu_pct).sum();
        let machine = MachineSummary {
            avg_busy_pct,
            peak_busy_pct: machine.iter().map(|m| m.busy_pct).fold(0.0, f64::max),
            max_load1: machine.iter().map(|m| m.load1).fold(0.0, f64::max),
            outside_cpu_pct: (avg_busy_pct * cores - watched).max(0.0),
        };
        (groups, machine)
    }

    /// The machine's per-second CPU series, for the JSON report.
    pub fn machine_series(&self) -> Vec<MachineTick> {
        self.lock().machine.clone()
    }
}
