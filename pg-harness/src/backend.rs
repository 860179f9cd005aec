//! Running one test suite against every storage backend of the broker: a
//! [`Backend`] names one, [`Backend::storage`] provides a fresh store's URL
//! for it, and [`on_each_backend!`](crate::on_each_backend) turns each
//! `async fn NAME(backend: Backend)` into the tests `sqlite::NAME` and
//! `postgres::NAME`.

use std::path::Path;

use crate::{database, PgDatabase, PgHarnessError};

/// The storage backends a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (the broker's embedded default).
    Sqlite,
    /// A fresh database on a throw-away PostgreSQL server.
    Postgres,
}

/// A fresh, empty store location for one test; a PostgreSQL database lives
/// as long as this value.
#[derive(Debug, Clone)]
pub struct TestStorage {
    url: String,
    database: Option<PgDatabase>,
}

impl TestStorage {
    /// The broker's `storage.url` for it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The PostgreSQL database, for [`Backend::Postgres`].
    pub fn database(&self) -> Option<&PgDatabase> {
        self.database.as_ref()
    }
}

impl Backend {
    /// A fresh store: `dir/NAME.db` for SQLite (the caller owns `dir`), a
    /// new database for PostgreSQL. Blocks while a server starts.
    pub fn storage(self, dir: &Path, name: &str) -> Result<TestStorage, PgHarnessError> {
        Ok(match self {
            Backend::Sqlite => TestStorage {
                url: format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
                database: None,
            },
            Backend::Postgres => {
                let db = database()?;
                TestStorage {
                    url: db.url(),
                    database: Some(db),
                }
            }
        })
    }
}

/// Runs each listed `async fn NAME(backend: Backend)` as a `#[tokio::test]`
/// per backend: `sqlite::NAME` and `postgres::NAME` (the caller depends on
/// tokio with its test macro).
#[macro_export]
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::Backend::Postgres).await
                }
            )+
        }
    };
}
