//! Connecting to the database and migrating it.
//!
//! A process that runs the API and the worker gives each a pool of its own. The worker's
//! PostgreSQL connections do not wait for their commits to be flushed to disk
//! (`synchronous_commit = off`, set as the connection starts; see [`Pool::Worker`]); the API's do.
//! SQLite runs in WAL mode with a busy timeout, so the two pools in the one process take turns
//! writing instead of failing; its `-wal` file is cut back to [`SQLITE_WAL_LIMIT`] after a
//! checkpoint, so a burst does not leave it at its largest size for good. Its file holds the JWT secret and the signing secrets, so it is
//! created readable by its owner only (see [`create_owner_only`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hookbeat_migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, TransactionTrait,
};

/// The size an SQLite `-wal` file is truncated to after a checkpoint empties it, in bytes.
pub const SQLITE_WAL_LIMIT: u64 = 16 * 1024 * 1024;

/// Whom a connection pool serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// The API and the one-shot commands: every commit is durable before it is acknowledged.
    Api,
    /// The worker. Its PostgreSQL commits do not wait for the WAL flush. Safe because every
    /// worker write can be redone: if PostgreSQL crashes and loses the last fraction of a second
    /// of them, due schedules are materialised again (the unique key prevents doubles), claims
    /// fall back to pending, and an attempt whose result was lost is delivered again with the
    /// same `webhook-id`: at least once, as promised. Not waiting is what lets one worker record
    /// thousands of attempts a second instead of one per disk flush; setting it as the
    /// connection starts, rather than in each transaction, saves a round trip per transaction
    /// and lets a single-statement write (a claim) go without one.
    Worker,
}

pub async fn connect(url: &str, pool: Pool) -> anyhow::Result<DatabaseConnection> {
    let sqlite = url.starts_with("sqlite:");
    if let Some(file) = sqlite_file(url).filter(|file| file.create) {
        create_owner_only(&file.path)?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(if sqlite { 8 } else { 20 })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .pragma("journal_size_limit", SQLITE_WAL_LIMIT.to_string())
                .foreign_keys(true)
        })
        .map_sqlx_postgres_opts(move |opts| match pool {
            Pool::Api => opts,
            Pool::Worker => opts.options([("synchronous_commit", "off")]),
        });
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to the database at {}", redact(url)))
}

/// The file of an SQLite URL, and whether the URL lets it be created (`mode=rwc`); `None` for a
/// database in memory or a URL that is not SQLite.
struct SqliteFile {
    path: PathBuf,
    create: bool,
}

fn sqlite_file(url: &str) -> Option<SqliteFile> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") {
        return None;
    }
    let params = url.split_once('?').map_or("", |(_, params)| params);
    let mode = url::form_urlencoded::parse(params.as_bytes())
        .find(|(key, _)| key == "mode")
        .map(|(_, value)| value.into_owned());
    // The path exactly as SQLite will be given it.
    let options = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let in_memory = mode.as_deref() == Some("memory")
        || path
            .to_str()
            .is_some_and(|p| p.starts_with("file:sqlx-in-memory-"));
    (!in_memory).then(|| SqliteFile {
        path: path.to_owned(),
        create: mode.as_deref() == Some("rwc"),
    })
}

/// Creates a missing SQLite file empty and with mode 0600 before SQLite opens it (SQLite makes
/// an empty file a new database). The mode is given at creation, so no umask can widen it and
/// no moment passes with the file readable by others. The `-wal` and `-shm` files need nothing:
/// SQLite creates them with the permissions of the database file, whatever the umask. An
/// existing file is left as it is (see [`warn_if_readable_by_others`]).
#[cfg(unix)]
fn create_owner_only(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => {
            Err(error).with_context(|| format!("creating the database file {}", path.display()))
        }
    }
}

#[cfg(not(unix))]
fn create_owner_only(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Warns about each of the SQLite files (the database, `-wal`, `-shm`) that group or others may
/// read or write: they hold the JWT secret (whoever reads it can mint admin tokens, whoever
/// writes it can set it) and the signing secrets. Called once at start-up, before [`connect`]
/// creates anything.
pub fn warn_if_readable_by_others(url: &str) {
    #[cfg(unix)]
    if let Some(file) = sqlite_file(url) {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut path = file.path.clone().into_os_string();
            path.push(suffix);
            let path = PathBuf::from(path);
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o066 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = %format!("{mode:04o}"),
                    "the database file can be read or changed by other users, and it holds the \
                     JWT secret and the signing secrets; make it its owner's only (chmod 600)"
                );
            }
        }
    }
}

/// The PostgreSQL advisory lock key that migrations hold ("hookbeat" in ASCII).
const MIGRATION_LOCK: i64 = 0x686f_6f6b_6265_6174;

/// Applies the pending migrations of the database at `url`, one process at a time: processes
/// that start together on a fresh database (two `serve` replicas, `hookbeat migrate` in each
/// pod of a deployment, `hookbeat token` beside a `serve` that is starting) would otherwise each
/// create the tables, and all but one fail. PostgreSQL: a transaction holds an advisory lock
/// while the migrations run; SQLite: an exclusive lock on the file `<database>.migrate-lock`.
pub async fn migrate(db: &DatabaseConnection, url: &str) -> anyhow::Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        let held = db.begin().await.context("beginning the migration lock")?;
        held.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await
            .context("taking the migration lock")?;
        Migrator::up(db, None)
            .await
            .context("applying migrations")?;
        held.commit()
            .await
            .context("releasing the migration lock")?;
        return Ok(());
    }
    let _held = match sqlite_file(url) {
        Some(file) => Some(lock_beside(&file.path).await?),
        None => None,
    };
    Migrator::up(db, None).await.context("applying migrations")
}

/// An exclusive lock on `<database>.migrate-lock`, held until the file is dropped. The file is
/// left in place: removing it while another process waits on it would let a third take a lock
/// on a new file at the same time.
async fn lock_beside(database: &Path) -> anyhow::Result<std::fs::File> {
    let mut name = database.as_os_str().to_owned();
    name.push(".migrate-lock");
    let path = PathBuf::from(name);
    tokio::task::spawn_blocking(move || {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .with_context(|| format!("opening the migration lock {}", path.display()))?;
        file.lock()
            .with_context(|| format!("taking the migration lock {}", path.display()))?;
        Ok(file)
    })
    .await
    .context("waiting for the migration lock")?
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_of_an_sqlite_url() {
        let file = sqlite_file("sqlite://data/hookbeat.db?mode=rwc").unwrap();
        assert_eq!(file.path, Path::new("data/hookbeat.db"));
        assert!(file.create);
        let file = sqlite_file("sqlite:///var/lib/hook%20beat.db").unwrap();
        assert_eq!(file.path, Path::new("/var/lib/hook beat.db"));
        assert!(!file.create, "mode=rw does not create");
        for url in [
            "sqlite::memory:",
            "sqlite://x.db?mode=memory",
            "postgres://u@h/db",
        ] {
            assert!(sqlite_file(url).is_none(), "{url}");
        }
    }
}
