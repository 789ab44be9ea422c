//! Reading `/proc`: a process's CPU time, resident memory and command line, and the machine's
//! CPU counters. The parsers are pure functions of the file text, so they are tested on samples.

use std::fs;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`): fixed at 100 by the Linux ABI on
/// the architectures this runs on, whatever the kernel's internal HZ.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// What one read of a process gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size (VmRSS), KiB.
    pub rss_kib: u64,
    /// Resident anonymous memory (RssAnon), KiB: private memory, without shared buffers or
    /// mapped files. For PostgreSQL backends it is the meaningful figure, since their VmRSS
    /// counts every page of shared buffers they touched.
    pub anon_kib: u64,
}

/// User + system time from `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) … utime(14) stime(15), so utime is the 12th.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `Name:   123 kB` line of `/proc/PID/status`, in KiB.
pub fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Busy and total ticks of all CPUs from the first line of `/proc/stat`; idle and iowait count
/// as not busy.
pub fn parse_machine_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    if values.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values[4];
    Some((total - idle, total))
}

/// Reads one process; `None` once it has exited.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        cpu_ticks: parse_stat_cpu(&stat)?,
        // Kernel threads and zombies have no VmRSS line: they hold no memory.
        rss_kib: parse_status_kib(&status, "VmRSS").unwrap_or(0),
        anon_kib: parse_status_kib(&status, "RssAnon").unwrap_or(0),
    })
}

/// The machine's (busy, total) CPU ticks.
pub fn machine_cpu() -> Option<(u64, u64)> {
    parse_machine_cpu(&fs::read_to_string("/proc/stat").ok()?)
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Processes whose command line contains `needle` (NUL separators read as spaces).
/// PostgreSQL names each backend `postgres: USER DATABASE HOST STATE` in its command line, so
/// this finds the backends serving one database.
pub fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    String::from_utf8_lossy(&raw)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_after_the_name() {
        // A name with a space and a parenthesis, as PostgreSQL's `postgres: x (y)` titles can be.
        let stat = "4242 (odd) name) S 1 4242 4242 0 -1 4194560 1590 0 0 0 \
                    137 42 0 0 20 0 9 0 1234 100000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(179));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn status_values_in_kib() {
        let status = "Name:\thookbeat\nVmPeak:\t  900000 kB\nVmRSS:\t   51234 kB\n\
                      RssAnon:\t   40000 kB\nRssFile:\t   11234 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(51_234));
        assert_eq!(parse_status_kib(status, "RssAnon"), Some(40_000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        // `VmRSS` must not match a longer name that starts the same way.
        assert_eq!(parse_status_kib("VmRSSx:\t 5 kB\n", "VmRSS"), None);
    }

    #[test]
    fn machine_cpu_excludes_idle_and_iowait() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        // busy = 100 + 5 + 50 + 3 + 2 + 0, total = busy + 800 + 40
        assert_eq!(parse_machine_cpu(stat), Some((160, 1000)));
        assert_eq!(parse_machine_cpu("intr 1 2 3"), None);
    }
}
