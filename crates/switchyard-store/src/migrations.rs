//! The schema migrations in `migrations/`, embedded in the binary.
//!
//! Each backend lists its files here; a test checks that the lists match the
//! directories. Versions, descriptions and checksums are the ones `sqlx migrate` and
//! `sqlx::migrate!` compute for the same files, so databases stay compatible with them.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationSource, MigrationType, Migrator};

/// One backend's migrations: `(version, description, SQL)`, in version order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Embedded(pub(crate) &'static [(i64, &'static str, &'static str)]);

pub(crate) const POSTGRES: Embedded = Embedded(&[(
    1,
    "event log",
    include_str!("../../../migrations/postgres/0001_event_log.sql"),
)]);

pub(crate) const SQLITE: Embedded = Embedded(&[(
    1,
    "event log",
    include_str!("../../../migrations/sqlite/0001_event_log.sql"),
)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}

/// Applies `migrations` that `conn` has not applied yet, under the backend's migration
/// lock (an advisory lock on Postgres).
///
/// A plain function returning a boxed future, rather than an `async fn`, so that the
/// future's `Send` bound is checked for this one connection's lifetime: inside an
/// `async_trait` method, sqlx's `Acquire` bound otherwise fails as "not general enough".
pub(crate) fn run<'c, A>(
    migrations: Embedded,
    conn: A,
) -> Pin<Box<dyn Future<Output = Result<(), MigrateError>> + Send + 'c>>
where
    A: sqlx::Acquire<'c> + Send + 'c,
    <A::Connection as std::ops::Deref>::Target: Migrate,
{
    Box::pin(async move {
        let migrator = Migrator::new(migrations).await?;
        migrator.run(conn).await
    })
}
