//! What a run happened on: cores, memory, the load when it began, and which hookbeat build was
//! measured, so that figures in BENCHMARKS.md can be traced to a machine state and a commit.

use std::path::Path;
use std::process::Command;

use crate::report::Environment;

pub fn describe(hookbeat_bin: &Path) -> Environment {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let load_at_start = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    let modified = std::fs::metadata(hookbeat_bin)
        .and_then(|m| m.modified())
        .map(|t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| "unknown".to_owned());
    Environment {
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory_total_mib: crate::procfs::parse_status_kib(&meminfo, "MemTotal").unwrap_or(0) / 1024,
        load_at_start,
        hookbeat_bin: hookbeat_bin.display().to_string(),
        hookbeat_bin_modified: modified,
        git: git_describe(),
    }
}

/// `git describe --always --dirty` of the working directory; a short-lived child that the
/// bench waits for, so it never outlives the run.
fn git_describe() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
