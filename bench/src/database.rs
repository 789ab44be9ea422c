//! The bench's own PostgreSQL database: created fresh for each run under a unique name, dropped
//! at the end (unless `--keep`); the name every run goes by; and a small connection pool, to
//! either database, for the bench's own queries.

use std::time::Duration;

use anyhow::Context;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, FromQueryResult};

pub struct BenchDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

/// Quotas high enough that no bench scenario meets them: the bench measures throughput, not
/// the quota checks (defaults are 10,000 schedules and 100 API requests a second per tenant).
const RAISE_QUOTAS: &str =
    "UPDATE tenants SET max_schedules = 100000000, api_rate_per_second = 1000000000";

pub async fn raise_quotas(db: &DatabaseConnection) -> anyhow::Result<()> {
    db.execute_unprepared(RAISE_QUOTAS)
        .await
        .context("raising the tenants' quotas")?;
    Ok(())
}

/// The name of a run, `hookbeat_bench_<time>_<pid>`: its PostgreSQL database and its run
/// directory go by it, so that [`owner_pid`] can tell whether the run is still going.
pub fn run_name() -> String {
    format!(
        "hookbeat_bench_{}_{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        std::process::id()
    )
}

impl BenchDatabase {
    /// Creates the database `name` on the server of `admin_url`.
    pub async fn create(admin_url: &str, name: &str) -> anyhow::Result<Self> {
        let name = name.to_owned();
        let url = with_database(admin_url, &name)?;
        let admin = connect(admin_url, 1).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating the database {name}"))?;
        admin.close().await.ok();
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    /// Sets a PostgreSQL parameter for every later session on this database only (`ALTER
    /// DATABASE … SET`), never for the server: gone when the database is dropped.
    pub async fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
            "--pg-setting: {key:?} is not a parameter name"
        );
        let admin = connect(&self.admin_url, 1).await?;
        admin
            .execute_unprepared(&format!(
                "ALTER DATABASE {} SET {key} = '{}'",
                self.name,
                value.replace('\'', "''")
            ))
            .await
            .with_context(|| format!("setting {key} on {}", self.name))?;
        admin.close().await.ok();
        Ok(())
    }

    /// Drops the database, disconnecting whatever still uses it.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let admin = connect(&self.admin_url, 1).await?;
        admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .with_context(|| format!("dropping the database {}", self.name))?;
        admin.close().await.ok();
        Ok(())
    }
}

#[derive(FromQueryResult)]
struct Name {
    datname: String,
}

/// The pid in a bench database's name, `hookbeat_bench_<time>_<pid>`.
pub fn owner_pid(database: &str) -> Option<u32> {
    database
        .strip_prefix("hookbeat_bench_")?
        .rsplit('_')
        .next()?
        .parse()
        .ok()
}

/// Whether the bench run named `name` is still going: its process is alive and a bench.
pub fn still_running(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("hookbeat-bench"))
    })
}

/// Drops the bench databases whose bench process is gone (killed before its teardown ran).
pub async fn cleanup(admin_url: &str) -> anyhow::Result<()> {
    let admin = connect(admin_url, 1).await?;
    let names = Name::find_by_statement(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT datname FROM pg_database WHERE datname LIKE 'hookbeat\\_bench\\_%'",
    ))
    .all(&admin)
    .await
    .context("listing bench databases")?;
    for Name { datname } in names {
        if still_running(&datname) {
            crate::progress::note(format!("{datname}: its bench is still running; kept"));
            continue;
        }
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"))
            .await
            .with_context(|| format!("dropping {datname}"))?;
        crate::progress::note(format!("dropped {datname}"));
        std::fs::remove_dir_all(std::env::temp_dir().join(&datname)).ok();
    }
    Ok(())
}

/// A pool of up to `connections` to a PostgreSQL or SQLite URL. On SQLite the bench's writes
/// wait for `hookbeat serve`'s as long as hookbeat's own wait for each other (its busy timeout);
/// WAL mode needs no setting, being a property of the file, set when hookbeat created it.
pub async fn connect(url: &str, connections: u32) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| opts.busy_timeout(Duration::from_secs(10)));
    Database::connect(options).await.with_context(|| {
        if url.starts_with("sqlite:") {
            format!("opening the SQLite database {url}")
        } else {
            format!(
                "connecting to PostgreSQL at {url} (is it running? `pg_ctlcluster 15 main start`)"
            )
        }
    })
}

/// `url` with its database (path) replaced by `name`.
pub fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url).with_context(|| format!("parsing {url}"))?;
    anyhow::ensure!(
        parsed.scheme().starts_with("postgres"),
        "--postgres-url must be a postgres:// URL"
    );
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}

/// Runs `test` (given a connection and the URL) on a PostgreSQL database of its own (dropped afterwards, whatever the test did)
/// on `HOOKBEAT_TEST_POSTGRES_URL` or the local server; skips loudly when there is none, unless
/// `HOOKBEAT_REQUIRE_POSTGRES=1`, as the workspace's tests do. `what` names the test in the
/// skip message.
#[cfg(test)]
pub async fn on_scratch_postgres<F, Fut>(what: &str, test: F)
where
    F: FnOnce(DatabaseConnection, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let admin = std::env::var("HOOKBEAT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| crate::cli::DEFAULT_POSTGRES_URL.to_owned());
    // Not `hookbeat_bench_…`, which `cleanup` would take for a dead bench's.
    let name = format!(
        "hookbeat_benchtest_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let database = match BenchDatabase::create(&admin, &name).await {
        Ok(database) => database,
        Err(error) => {
            let required = std::env::var("HOOKBEAT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "PostgreSQL is required but unreachable: {error:#}"
            );
            eprintln!("\n*** SKIPPING {what}: {error:#} ***\n");
            return;
        }
    };
    let db = connect(&database.url, 1).await.unwrap();
    let checked = tokio::spawn(test(db, database.url.clone())).await;
    database.drop_database().await.unwrap();
    if let Err(failure) = checked {
        std::panic::resume_unwind(failure.into_panic());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b1"
        );
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1/x?sslmode=disable", "b2").unwrap(),
            "postgres://u:p@127.0.0.1/b2?sslmode=disable"
        );
        assert!(with_database("sqlite://x.db", "b").is_err());
    }

    #[test]
    fn bench_databases_name_their_process() {
        assert_eq!(
            owner_pid("hookbeat_bench_20261122171737_15742"),
            Some(15742)
        );
        assert_eq!(owner_pid("hookbeat_other_1"), None);
        assert_eq!(owner_pid("hookbeat_bench_x"), None);
    }
}
