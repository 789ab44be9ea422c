//! The embedded mode's database (`--database sqlite`): a fresh SQLite file in the run directory,
//! given to `hookbeat serve` as a user of the embedded default gives it; what the file costs on
//! disk; which PostgreSQL figures have no counterpart there; and removing the run directories
//! (with their files) of runs that were killed outright.

use std::path::Path;

use anyhow::Context;
use sea_orm::{DatabaseConnection, DbBackend, FromQueryResult, Statement};
use serde::Serialize;

use crate::database::still_running;
use crate::progress::note;

/// The database file's name inside the run directory.
pub const FILE_NAME: &str = "hookbeat.db";

/// The figures a PostgreSQL run reports that an SQLite run cannot, each with why; listed in the
/// report rather than shown as zeros.
pub const NOT_APPLICABLE: &[&str] = &[
    "postgres.counters: table and database counters (pg_stat_user_tables, pg_stat_database); \
     SQLite keeps none",
    "postgres.activity: samples of the server's active backends (pg_stat_activity); there is \
     no server, the database works inside `hookbeat serve`",
    "postgres.server: the server's settings; sqlite.version names the library instead",
    "postgres.wal: WAL per delivered fire (pg_stat_wal, pg_current_wal_lsn(), \
     pg_stat_statements); SQLite's WAL is a file, rewound at each checkpoint, whose size \
     sqlite.wal_bytes gives",
    "processes `postgres backends`: the database's CPU and memory are part of `serve`'s",
];

/// [`NOT_APPLICABLE`] as the report lists it.
pub fn not_applicable() -> Vec<String> {
    NOT_APPLICABLE.iter().map(|s| (*s).to_owned()).collect()
}

/// The URL `hookbeat serve` is given for the file at `path` (absolute): created if absent
/// (`mode=rwc`, as in hookbeat's default), its path percent-encoded.
pub fn url(path: &Path) -> anyhow::Result<String> {
    let file = url::Url::from_file_path(path)
        .map_err(|()| anyhow::anyhow!("{} is not an absolute path", path.display()))?;
    Ok(format!("sqlite://{}?mode=rwc", file.path()))
}

/// How much room the database takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sizes {
    pub database_bytes: u64,
    /// The `-wal` file. hookbeat sets no `journal_size_limit`, so a checkpoint rewinds the WAL
    /// without shrinking the file: while hookbeat runs, its size is the most the WAL ever held.
    /// It is gone once the last connection closes.
    pub wal_bytes: u64,
}

/// The sizes of the database file at `path` and of its WAL (0 for a file that is absent).
pub fn sizes(path: &Path) -> Sizes {
    let size = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(name).map_or(0, |m| m.len())
    };
    Sizes {
        database_bytes: size(""),
        wal_bytes: size("-wal"),
    }
}

#[derive(FromQueryResult)]
struct Version {
    version: String,
}

/// The SQLite library's version, as the bench's connection reports it (hookbeat built from the
/// same lock file bundles the same one).
pub async fn version(db: &DatabaseConnection) -> anyhow::Result<String> {
    Ok(Version::find_by_statement(Statement::from_string(
        DbBackend::Sqlite,
        "SELECT sqlite_version() AS version",
    ))
    .one(db)
    .await
    .context("reading the SQLite version")?
    .map_or_else(String::new, |v| v.version))
}

/// Removes the run directories under `base` that hold an SQLite bench database and whose bench
/// process is gone (killed before its teardown ran).
pub fn cleanup(base: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(base).with_context(|| format!("listing {}", base.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        if !name.starts_with("hookbeat_bench_") || !dir.join(FILE_NAME).is_file() {
            continue;
        }
        if still_running(&name) {
            note(format!(
                "{}: its bench is still running; kept",
                dir.display()
            ));
            continue;
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        note(format!("removed {}", dir.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_the_path_and_create_the_file() {
        assert_eq!(
            url(Path::new("/tmp/hookbeat_bench_1_2/hookbeat.db")).unwrap(),
            "sqlite:///tmp/hookbeat_bench_1_2/hookbeat.db?mode=rwc"
        );
        assert_eq!(
            url(Path::new("/tmp/a b/hookbeat.db")).unwrap(),
            "sqlite:///tmp/a%20b/hookbeat.db?mode=rwc"
        );
        assert!(url(Path::new("relative/hookbeat.db")).is_err());
    }

    #[test]
    fn sizes_count_the_file_and_its_wal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        assert_eq!(sizes(&file), Sizes::default());
        std::fs::write(&file, [0u8; 4096]).unwrap();
        std::fs::write(dir.path().join("hookbeat.db-wal"), [0u8; 100]).unwrap();
        assert_eq!(
            sizes(&file),
            Sizes {
                database_bytes: 4096,
                wal_bytes: 100
            }
        );
    }

    #[test]
    fn wal_per_fire_is_listed_as_not_applicable() {
        let report = crate::report::Report {
            database: crate::cli::DatabaseMode::Sqlite,
            not_applicable: not_applicable(),
            ..Default::default()
        };
        let text = report.render();
        assert!(
            text.lines().any(|l| l.starts_with(
                "not applicable on this database: postgres.wal: WAL per delivered fire"
            )),
            "{text}"
        );
        assert!(!text.contains("PostgreSQL WAL"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["postgres"].is_null());
        let listed = json["not_applicable"].as_array().unwrap();
        assert!(listed
            .iter()
            .any(|v| v.as_str().unwrap().starts_with("postgres.wal: ")));
    }

    #[test]
    fn cleanup_removes_only_dead_sqlite_runs() {
        let base = tempfile::tempdir().unwrap();
        let make = |name: &str, file: bool| {
            let dir = base.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            if file {
                std::fs::write(dir.join(FILE_NAME), b"").unwrap();
            }
            dir
        };
        // pid 0 does not exist and pid 1 is init: neither is a bench.
        let dead = make("hookbeat_bench_20260101000000_0", true);
        let postgres_run = make("hookbeat_bench_20260101000000_1", false);
        let other = make("something_else", true);
        cleanup(base.path()).unwrap();
        assert!(!dead.exists());
        assert!(postgres_run.exists());
        assert!(other.exists());
    }
}
