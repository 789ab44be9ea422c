//! hookbeat's JSON logs (`--log-format json`, one object per line on stderr, which the bench
//! sends to a file per process): following a file for start-up markers, and tallying the
//! warnings and errors of a whole run.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Reads the complete lines appended to a log file since the last read.
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl LogTail {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            offset: 0,
            partial: String::new(),
        }
    }

    /// New complete lines; a line still being written waits for the next call.
    pub fn read_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut fresh = String::new();
        let Ok(read) = file.read_to_string(&mut fresh) else {
            return Vec::new();
        };
        self.offset += read as u64;
        self.partial.push_str(&fresh);
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let complete: String = self.partial.drain(..=end).collect();
        complete.lines().map(str::to_owned).collect()
    }
}

/// The `message` of a JSON log line.
pub fn message(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(value.get("message")?.as_str()?.to_owned())
}

/// A string field of a JSON log line.
pub fn field(line: &str, name: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(value.get(name)?.as_str()?.to_owned())
}

/// The warnings and errors in one process's log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogTally {
    pub lines: u64,
    pub warnings: u64,
    pub errors: u64,
    /// Each distinct warning or error message with how often it appeared (at most 10).
    pub messages: BTreeMap<String, u64>,
}

/// Reads a whole log. Only lines whose level is WARN or ERROR are parsed, so a log of millions
/// of `attempt recorded` lines is tallied in a second or two.
pub fn tally(path: &Path) -> LogTally {
    let mut result = LogTally::default();
    let Ok(file) = File::open(path) else {
        return result;
    };
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        result.lines += 1;
        let level = if line.contains("\"level\":\"WARN\"") {
            &mut result.warnings
        } else if line.contains("\"level\":\"ERROR\"") || line.starts_with("error:") {
            &mut result.errors
        } else {
            continue;
        };
        *level += 1;
        let text = match (message(&line), field(&line, "error")) {
            (Some(message), Some(error)) => format!("{message}: {error}"),
            (Some(message), None) => message,
            // Not JSON: `error: …` printed by main before exiting.
            _ => line.clone(),
        };
        let text: String = text.chars().take(200).collect();
        if result.messages.len() < 10 || result.messages.contains_key(&text) {
            *result.messages.entry(text).or_default() += 1;
        }
    }
    result
}

/// The last `n` lines of a file, for error messages about a process that died.
pub fn last_lines(path: &Path, n: usize) -> String {
    let Ok(file) = File::open(path) else {
        return String::new();
    };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tails_complete_lines_only_and_tallies_levels() {
        let dir = std::env::temp_dir().join(format!("hookbeat-bench-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("worker.log");
        let mut file = File::create(&path).unwrap();
        let mut tail = LogTail::new(&path);
        write!(
            file,
            "{{\"level\":\"INFO\",\"message\":\"worker started\"}}\n{{\"level\":\"WARN\",\"mess"
        )
        .unwrap();
        file.flush().unwrap();
        let lines = tail.read_lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(message(&lines[0]).as_deref(), Some("worker started"));
        writeln!(file, "age\":\"worker pass failed\",\"error\":\"boom\"}}").unwrap();
        writeln!(
            file,
            "{{\"level\":\"WARN\",\"message\":\"worker pass failed\",\"error\":\"boom\"}}"
        )
        .unwrap();
        writeln!(file, "error: the database has 1 pending migration(s)").unwrap();
        file.flush().unwrap();
        assert_eq!(tail.read_lines().len(), 3);
        assert!(tail.read_lines().is_empty());

        let tally = tally(&path);
        assert_eq!(tally.lines, 4);
        assert_eq!(tally.warnings, 2);
        assert_eq!(tally.errors, 1);
        assert_eq!(tally.messages.get("worker pass failed: boom"), Some(&2));
        assert_eq!(
            last_lines(&path, 1),
            "error: the database has 1 pending migration(s)"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
