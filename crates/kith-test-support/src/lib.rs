//! Fresh databases for tests, one per test: a SQLite file in a temporary directory, or a new
//! PostgreSQL database created from `KITH_TEST_POSTGRES_URL` and dropped afterwards;
//! [`on_each_engine!`] to run one test on each; and, with feature `app`, the shared test
//! `world`.
//!
//! Without `KITH_TEST_POSTGRES_URL` the PostgreSQL half of a suite is skipped with a note —
//! except under `CI=true`, where a missing PostgreSQL fails the test: a green CI run must
//! have exercised both backends.

use std::path::PathBuf;

use kith_store::{DatabaseUrl, Store};

#[cfg(feature = "app")]
pub mod world;

/// Which engine a test database runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh, migrated database that is removed when dropped.
pub struct TestDatabase {
    pub engine: Engine,
    pub url: DatabaseUrl,
    /// The URL as text, e.g. for `KITH_DATABASE_URL`.
    pub url_text: String,
    _directory: Option<tempfile::TempDir>,
    postgres_admin: Option<(String, String)>,
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let path: PathBuf = directory.path().join("kith.db");
        let url_text = format!("sqlite://{}", path.display());
        Self {
            engine: Engine::Sqlite,
            url: DatabaseUrl::Sqlite(path),
            url_text,
            _directory: Some(directory),
            postgres_admin: None,
        }
    }

    /// A new PostgreSQL database, or `None` (with a note) when PostgreSQL is not configured
    /// outside CI. Panics under `CI=true` without `KITH_TEST_POSTGRES_URL`.
    pub fn postgres() -> Option<Self> {
        let Some(admin_url) = std::env::var("KITH_TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty()) else {
            if std::env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1") {
                panic!(
                    "CI=true but KITH_TEST_POSTGRES_URL is not set: the PostgreSQL suite must run in CI (scripts/test sets it)"
                );
            }
            eprintln!("note: KITH_TEST_POSTGRES_URL is not set; skipping the PostgreSQL half of this test");
            return None;
        };
        Some(Self::postgres_on(&admin_url, "kith_test").unwrap_or_else(|error| panic!("{error}")))
    }

    /// A new PostgreSQL database named `{prefix}_{uuid}` on the server of `admin_url` (a URL
    /// whose user may `CREATE DATABASE`), dropped when this value is dropped.
    pub fn postgres_on(admin_url: &str, prefix: &str) -> Result<Self, String> {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut admin = postgres::Client::connect(admin_url, postgres::NoTls)
            .map_err(|error| format!("cannot connect to the PostgreSQL server: {error}"))?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|error| format!("CREATE DATABASE {name}: {error}"))?;
        let url_text = database_url(admin_url, &name);
        Ok(Self {
            engine: Engine::Postgres,
            url: DatabaseUrl::Postgres(url_text.clone()),
            url_text,
            _directory: None,
            postgres_admin: Some((admin_url.to_owned(), name)),
        })
    }

    /// The database's name on its server (PostgreSQL), for messages.
    pub fn postgres_name(&self) -> Option<&str> {
        self.postgres_admin.as_ref().map(|(_, name)| name.as_str())
    }

    /// SQLite, then PostgreSQL when available.
    pub fn all() -> Vec<Self> {
        let mut databases = vec![Self::sqlite()];
        databases.extend(Self::postgres());
        databases
    }

    /// Opens and migrates a store on this database.
    pub fn store(&self) -> Store {
        Store::open_and_migrate(&self.url).expect("the test database opens and migrates")
    }

    /// Runs SQL directly on the database, bypassing Kith (to simulate tampering).
    pub fn execute_raw(&self, sql: &str) -> Result<(), String> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let connection = kith_store::sqlite::raw_connection(path).map_err(|error| error.to_string())?;
                connection.execute_batch(sql).map_err(|error| error.to_string())
            }
            DatabaseUrl::Postgres(url) => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(|error| error.to_string())?;
                client
                    .batch_execute(sql)
                    .map_err(|error| format!("{error}: {:?}", error.as_db_error().map(|db| db.message())))
            }
        }
    }
}

/// Two tests for one test function: `on_each_engine!(name)` next to `fn name(database:
/// TestDatabase)` makes `name::sqlite` and `name::postgres`, so that a failure names the
/// engine it failed on. The PostgreSQL test is skipped with a note when PostgreSQL is not
/// configured, and fails under `CI=true` ([`TestDatabase::postgres`]).
///
/// ```ignore
/// on_each_engine!(migrations_are_idempotent);
/// fn migrations_are_idempotent(database: TestDatabase) {
///     assert!(database.store().migrate().unwrap().applied.is_empty());
/// }
/// ```
#[macro_export]
macro_rules! on_each_engine {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::TestDatabase::sqlite());
            }

            #[test]
            fn postgres() {
                if let Some(database) = $crate::TestDatabase::postgres() {
                    super::$name(database);
                }
            }
        }
    )+};
}

/// Runs `test` on SQLite, then on PostgreSQL when available, in one test; a failure says
/// which engine it failed on ("on Postgres: …"). For a test whose engines cannot be two
/// tests; otherwise prefer [`on_each_engine!`].
pub fn each_engine(test: impl Fn(TestDatabase)) {
    for database in TestDatabase::all() {
        let engine = database.engine;
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(database))) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(a panic without a message)");
            panic!("on {engine:?}: {message}");
        }
    }
}

/// The URL of database `name` on the server of `admin_url` (same user, host, port and
/// options).
pub fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |index| index + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{name}?{query}"),
        None => format!("{host_part}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres_admin.take()
            && let Ok(mut admin) = postgres::Client::connect(&admin_url, postgres::NoTls)
        {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failure_names_its_engine() {
        let outcome = std::panic::catch_unwind(|| {
            super::each_engine(|database| assert_ne!(database.engine, super::Engine::Sqlite, "the test's own message"))
        });
        let panic = outcome.expect_err("the SQLite run fails");
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(message.starts_with("on Sqlite: ") && message.contains("the test's own message"), "{message}");
    }

    #[test]
    fn database_urls_keep_credentials_and_options() {
        assert_eq!(super::database_url("postgres://u:p@h:5432/postgres", "x"), "postgres://u:p@h:5432/x");
        assert_eq!(super::database_url("postgres://h/postgres?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
        assert_eq!(super::database_url("postgres://h", "x"), "postgres://h/x");
    }
}
