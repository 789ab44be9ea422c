//! Test databases. SQLite: a file in a temporary directory. PostgreSQL: a database created from
//! a template that is migrated once per test process, dropped when the test ends.
//!
//! PostgreSQL is found at `HOOKBEAT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached the PostgreSQL tests
//! are skipped with a loud message, unless `HOOKBEAT_REQUIRE_POSTGRES=1` (as in CI), where they fail.

use hookbeat::database::Pool;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::sync::OnceCell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

fn admin_url() -> String {
    std::env::var("HOOKBEAT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn with_database(admin: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin).expect("HOOKBEAT_TEST_POSTGRES_URL is a URL");
    url.set_path(name);
    url.to_string()
}

fn postgres_required() -> bool {
    std::env::var("HOOKBEAT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

static TEMPLATE: OnceCell<Option<String>> = OnceCell::const_new();

/// The migrated template database of this test process, or `None` when PostgreSQL is absent.
async fn template() -> Option<String> {
    TEMPLATE
        .get_or_init(|| async {
            let admin = match Database::connect(admin_url()).await {
                Ok(admin) => admin,
                Err(error) => {
                    assert!(!postgres_required(), "PostgreSQL is required (HOOKBEAT_REQUIRE_POSTGRES=1) but unreachable: {error}");
                    eprintln!("\n*** SKIPPING PostgreSQL tests: cannot reach {}: {error} ***\n", admin_url());
                    return None;
                }
            };
            drop_leftovers(&admin).await;
            let name = format!("hookbeat_t_{}_tpl", std::process::id());
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
                .await
                .expect("dropping an old template");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("creating the template database");
            let url = with_database(&admin_url(), &name);
            let db = Database::connect(&url)
                .await
                .expect("connecting to the template");
            hookbeat::database::migrate(&db, &url)
                .await
                .expect("migrating the template");
            db.close().await.expect("closing the template");
            admin.close().await.ok();
            Some(name)
        })
        .await
        .clone()
}

/// Drops databases left by test processes that are gone (killed before their cleanup ran).
async fn drop_leftovers(admin: &DatabaseConnection) {
    use sea_orm::{FromQueryResult, Statement};
    #[derive(FromQueryResult)]
    struct Name {
        datname: String,
    }
    let names = Name::find_by_statement(Statement::from_string(
        admin.get_database_backend(),
        "SELECT datname FROM pg_database WHERE datname LIKE 'hookbeat\\_t\\_%'",
    ))
    .all(admin)
    .await
    .unwrap_or_default();
    for Name { datname } in names {
        let pid = datname
            .split('_')
            .nth(2)
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"))
                .await;
        }
    }
}

/// A directory that lives as long as the database, and the URL of an SQLite file in it.
fn sqlite_in_temporary_directory() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("hookbeat.db").display()
    );
    (dir, url)
}

/// A PostgreSQL database name of this test process (`drop_leftovers` knows the prefix).
fn database_name() -> String {
    format!(
        "hookbeat_t_{}_{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    )
}

impl TestDb {
    /// A fresh database with no tables; `None` when the backend is PostgreSQL and it is absent.
    pub async fn unmigrated(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let (dir, url) = sqlite_in_temporary_directory();
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                template().await?;
                let name = database_name();
                let admin = Database::connect(admin_url())
                    .await
                    .expect("connecting to PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("creating an empty database");
                admin.close().await.ok();
                Some(TestDb {
                    url: with_database(&admin_url(), &name),
                    _dir: None,
                    pg_name: Some(name),
                })
            }
        }
    }

    /// A fresh, migrated database; `None` when the backend is PostgreSQL and it is absent.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let (dir, url) = sqlite_in_temporary_directory();
                let db = hookbeat::database::connect(&url, Pool::Api)
                    .await
                    .expect("opening SQLite");
                hookbeat::database::migrate(&db, &url)
                    .await
                    .expect("migrating SQLite");
                db.close().await.ok();
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let template = template().await?;
                let name = database_name();
                let admin = Database::connect(admin_url())
                    .await
                    .expect("connecting to PostgreSQL");
                // Concurrent copies of one template can collide briefly; retry a few times.
                let mut attempt = 0;
                loop {
                    match admin
                        .execute_unprepared(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                        .await
                    {
                        Ok(_) => break,
                        Err(error) if attempt < 20 => {
                            attempt += 1;
                            let _ = error;
                            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt))
                                .await;
                        }
                        Err(error) => panic!("creating test database {name}: {error}"),
                    }
                }
                admin.close().await.ok();
                Some(TestDb {
                    url: with_database(&admin_url(), &name),
                    _dir: None,
                    pg_name: Some(name),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime; the cleanup needs a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a cleanup runtime");
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(admin_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    admin.close().await.ok();
                }
            });
        })
        .join();
    }
}
