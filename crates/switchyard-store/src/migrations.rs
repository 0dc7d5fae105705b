//! The schema migrations in `migrations/`, embedded in the binary.
//!
//! Each backend lists its files here (a new migration is a new file plus one line in
//! its list), and a test checks that the lists match the directories. `sqlx::migrate!`
//! would find the files itself but needs sqlx's `macros` feature, which the workspace
//! leaves off. Versions, descriptions and checksums are the ones `sqlx migrate` and
//! `sqlx::migrate!` compute for the same files, so databases stay compatible with them.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationSource, MigrationType, Migrator};

/// One backend's migrations: `(version, description, SQL)`, in version order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Embedded(&'static [(i64, &'static str, &'static str)]);

pub(crate) const POSTGRES: Embedded = Embedded(&[
    (
        1,
        "event log",
        include_str!("../../../migrations/postgres/0001_event_log.sql"),
    ),
    (
        2,
        "schedules",
        include_str!("../../../migrations/postgres/0002_schedules.sql"),
    ),
    (
        3,
        "source state",
        include_str!("../../../migrations/postgres/0003_source_state.sql"),
    ),
    (
        4,
        "claim order index",
        include_str!("../../../migrations/postgres/0004_claim_order_index.sql"),
    ),
    (
        5,
        "lease index",
        include_str!("../../../migrations/postgres/0005_lease_index.sql"),
    ),
]);

pub(crate) const SQLITE: Embedded = Embedded(&[
    (
        1,
        "event log",
        include_str!("../../../migrations/sqlite/0001_event_log.sql"),
    ),
    (
        2,
        "schedules",
        include_str!("../../../migrations/sqlite/0002_schedules.sql"),
    ),
    (
        3,
        "source state",
        include_str!("../../../migrations/sqlite/0003_source_state.sql"),
    ),
    (
        4,
        "claim order index",
        include_str!("../../../migrations/sqlite/0004_claim_order_index.sql"),
    ),
]);

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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::{Embedded, POSTGRES, SQLITE};

    /// `(version, description, SQL)` of every `.sql` file in `migrations/<backend>`,
    /// named the way sqlx names them (`0001_event_log.sql` is version 1, "event log").
    fn on_disk(backend: &str) -> Vec<(i64, String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .join(backend);
        let mut found: Vec<(i64, String, String)> = fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("read {}: {error}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .map(|path| {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .expect("UTF-8 file name");
                let (version, description) = stem.split_once('_').expect("VERSION_DESCRIPTION.sql");
                let version = version.parse().expect("numeric version");
                (
                    version,
                    description.replace('_', " "),
                    fs::read_to_string(&path).expect("readable"),
                )
            })
            .collect();
        found.sort();
        found
    }

    fn listed(embedded: Embedded) -> Vec<(i64, String, String)> {
        embedded
            .0
            .iter()
            .map(|&(version, description, sql)| (version, description.to_owned(), sql.to_owned()))
            .collect()
    }

    #[test]
    fn every_migration_file_is_embedded() {
        assert_eq!(
            listed(POSTGRES),
            on_disk("postgres"),
            "list every file of migrations/postgres in POSTGRES"
        );
        assert_eq!(
            listed(SQLITE),
            on_disk("sqlite"),
            "list every file of migrations/sqlite in SQLITE"
        );
    }
}
