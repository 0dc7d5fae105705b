//! The schema migrations in `migrations/`, embedded in the binary.
//!
//! Each backend lists its files here (a new migration is a new file plus one line in
//! its list), and a test checks that the lists match the directories. `sqlx::migrate!`
//! would find the files itself but needs sqlx's `macros` feature, which the workspace
//! leaves off. Versions, descriptions and checksums are the ones `sqlx migrate` and
//! `sqlx::migrate!` compute for the same files, so databases stay compatible with them.

use std::borrow::Cow;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationSource, MigrationType, Migrator};

use crate::{AppliedMigration, StoreError};

/// One backend's migrations: `(version, description, SQL)`, in version order, and the
/// migrations among them whose comments were reworded after databases applied them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Embedded(
    &'static [(i64, &'static str, &'static str)],
    &'static [Reworded],
);

/// A migration whose comments changed after databases applied it. A database records
/// each migration's checksum when it applies it, and refuses to run when a file's
/// checksum differs; such a migration keeps the checksum of the file as applied. A test
/// checks that its statements (the file without comment lines) are still the ones that
/// were applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reworded {
    version: i64,
    /// SHA-384 of the file as databases applied it, in hex.
    applied: &'static str,
    /// SHA-384 of its statements: its lines, less those that are comments, joined by
    /// newlines, in hex.
    #[cfg(test)]
    statements: &'static str,
}

pub(crate) const POSTGRES: Embedded = Embedded(
    &[
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
        (
            6,
            "final attempt on delivery",
            include_str!("../../../migrations/postgres/0006_final_attempt_on_delivery.sql"),
        ),
        (
            7,
            "hot claim",
            include_str!("../../../migrations/postgres/0007_hot_claim.sql"),
        ),
        (
            8,
            "event cascade by trigger",
            include_str!("../../../migrations/postgres/0008_event_cascade_by_trigger.sql"),
        ),
        (
            9,
            "readiness",
            include_str!("../../../migrations/postgres/0009_readiness.sql"),
        ),
        (
            10,
            "retention",
            include_str!("../../../migrations/postgres/0010_retention.sql"),
        ),
        (
            11,
            "cloudevent attributes",
            include_str!("../../../migrations/postgres/0011_cloudevent_attributes.sql"),
        ),
        (
            12,
            "attempt output",
            include_str!("../../../migrations/postgres/0012_attempt_output.sql"),
        ),
    ],
    &[Reworded {
        version: 8,
        applied: "91ba07305490eb9721812fee49b6954f627dd2787e2f55724d22228d41799bb303fc5c27bc190bdd11192f8f5c4a6d49",
        #[cfg(test)]
        statements: "030e9f3a9e7801368c1c35e097fc0f103894522d30bfa30a46ecfdd60b2e4771918f6957159742e8f3da7b7399b7355d",
    }],
);

pub(crate) const SQLITE: Embedded = Embedded(
    &[
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
        (
            5,
            "final attempt on delivery",
            include_str!("../../../migrations/sqlite/0005_final_attempt_on_delivery.sql"),
        ),
        (
            6,
            "lease on pending",
            include_str!("../../../migrations/sqlite/0006_lease_on_pending.sql"),
        ),
        (
            7,
            "readiness",
            include_str!("../../../migrations/sqlite/0007_readiness.sql"),
        ),
        (
            8,
            "retention",
            include_str!("../../../migrations/sqlite/0008_retention.sql"),
        ),
        (
            9,
            "cloudevent attributes",
            include_str!("../../../migrations/sqlite/0009_cloudevent_attributes.sql"),
        ),
        (
            10,
            "attempt output",
            include_str!("../../../migrations/sqlite/0010_attempt_output.sql"),
        ),
    ],
    &[],
);

impl Embedded {
    /// The migrations as sqlx sees them, each with the checksum databases recorded.
    fn migrations(self) -> Vec<Migration> {
        self.0
            .iter()
            .map(|&(version, description, sql)| {
                let mut migration = Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                );
                if let Some(reworded) = self.1.iter().find(|r| r.version == version) {
                    migration.checksum = Cow::Owned(from_hex(reworded.applied));
                }
                migration
            })
            .collect()
    }

    fn description(self, version: i64) -> &'static str {
        self.0
            .iter()
            .find(|(v, _, _)| *v == version)
            .map_or("unknown", |(_, description, _)| description)
    }
}

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>> {
        Box::pin(std::future::ready(Ok(self.migrations())))
    }
}

/// The bytes of a hex string of even length.
fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("a hex checksum"))
        .collect()
}

/// Applies `migrations` that `conn` has not applied yet, under the backend's migration
/// lock (a session advisory lock on Postgres), and returns the ones it applied.
///
/// A plain function returning a boxed future, rather than an `async fn`, so that the
/// future's `Send` bound is checked for this one connection's lifetime: inside an
/// `async_trait` method, sqlx's `Acquire` bound otherwise fails as "not general enough".
pub(crate) fn run<'c, A>(
    migrations: Embedded,
    conn: A,
) -> Pin<Box<dyn Future<Output = Result<Vec<AppliedMigration>, MigrateError>> + Send + 'c>>
where
    A: sqlx::Acquire<'c> + Send + 'c,
    <A::Connection as std::ops::Deref>::Target: Migrate,
{
    Box::pin(async move {
        let mut migrator = Migrator::new(migrations).await?;
        let mut conn = conn.acquire().await?;
        // The lock is taken here rather than by the migrator, so that what was applied
        // before is read under it too.
        migrator.set_locking(false);
        conn.lock().await?;
        let applied = apply_missing(&migrator, migrations, &mut *conn).await;
        // On an error the lock is left to the connection, which the caller closes or
        // rolls back: unlocking could fail the same way and hide the first error.
        if applied.is_ok() {
            conn.unlock().await?;
        }
        applied
    })
}

async fn apply_missing<C: Migrate>(
    migrator: &Migrator,
    migrations: Embedded,
    conn: &mut C,
) -> Result<Vec<AppliedMigration>, MigrateError> {
    conn.ensure_migrations_table().await?;
    let before: HashSet<i64> = conn
        .list_applied_migrations()
        .await?
        .iter()
        .map(|migration| migration.version)
        .collect();
    migrator.run_direct(conn).await?;
    Ok(migrations
        .0
        .iter()
        .filter(|(version, _, _)| !before.contains(version))
        .map(|&(version, description, _)| AppliedMigration {
            version,
            description: description.to_owned(),
        })
        .collect())
}

/// One row of sqlx's `_sqlx_migrations`: version, whether it finished, checksum.
pub(crate) type Recorded = (i64, bool, Vec<u8>);

/// Whether a database that recorded `recorded` (`None`: it has no bookkeeping table)
/// has exactly the schema `migrations` make. Each way it can differ is a
/// [`StoreError::Schema`] that says what to do.
pub(crate) fn check(migrations: Embedded, recorded: Option<&[Recorded]>) -> Result<(), StoreError> {
    let Some(recorded) = recorded else {
        return Err(StoreError::Schema(
            "the store has no Switchyard schema: run `switchyard migrate` to create it".into(),
        ));
    };
    let known = migrations.migrations();
    let latest = known.last().map_or(0, |m| m.version);
    if let Some((version, _, _)) = recorded.iter().find(|(_, finished, _)| !finished) {
        return Err(StoreError::Schema(format!(
            "migration {version} ({}) failed part-way in the store: repair the schema by \
             hand, then run `switchyard migrate`",
            migrations.description(*version)
        )));
    }
    if let Some((version, _, _)) = recorded.iter().find(|(v, _, _)| *v > latest) {
        return Err(StoreError::Schema(format!(
            "the store's schema is newer than this switchyard: it has migration {version}, \
             this binary knows up to {latest}; use the switchyard whose `switchyard migrate` \
             made it, or a newer one"
        )));
    }
    for migration in &known {
        match recorded.iter().find(|(v, _, _)| *v == migration.version) {
            Some((_, _, checksum)) if checksum[..] != migration.checksum[..] => {
                return Err(StoreError::Schema(format!(
                    "migration {} ({}) in the store differs from this switchyard's: the store \
                     was migrated by another build; run `switchyard migrate` with the build \
                     that made it",
                    migration.version, migration.description
                )));
            }
            Some(_) => {}
            None => {
                let at = recorded.iter().map(|(v, _, _)| *v).max().unwrap_or(0);
                return Err(StoreError::Schema(format!(
                    "the store's schema is older than this switchyard: it is at migration \
                     {at}, this binary needs {latest}; run `switchyard migrate` to upgrade it"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use sqlx::{Connection, PgConnection, SqliteConnection};

    use sha2::{Digest, Sha384};

    use super::{Embedded, POSTGRES, SQLITE, run};

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

    /// A reworded migration's statements are the ones databases applied, and its
    /// applied checksum is not the file's own (else it needs no entry).
    #[test]
    fn reworded_migrations_changed_only_comments() {
        for embedded in [POSTGRES, SQLITE] {
            for reworded in embedded.1 {
                let &(_, _, sql) = embedded
                    .0
                    .iter()
                    .find(|(version, _, _)| *version == reworded.version)
                    .expect("a reworded migration is embedded");
                let statements: Vec<&str> = sql
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("--"))
                    .collect();
                assert_eq!(
                    hex(&Sha384::digest(statements.join("\n"))),
                    reworded.statements,
                    "migration {} changed more than its comments",
                    reworded.version
                );
                assert_ne!(hex(&Sha384::digest(sql)), reworded.applied);
            }
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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

    /// The attempts before the migration that moves final attempts onto their
    /// deliveries: a delivery that succeeded at its second attempt, one that died, one
    /// waiting to retry, and a replayed dead letter.
    const OLD_ATTEMPTS: &str = "
        INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, outcome, error)
        VALUES (1, 1, '2026-05-01T12:00:00.000000Z', 5, 'retry', 'boom'),
               (1, 2, '2026-05-01T12:00:01.000000Z', 6, 'succeeded', NULL),
               (2, 1, '2026-05-01T12:00:02.000000Z', 7, 'dead', 'fatal: no'),
               (3, 1, '2026-05-01T12:00:03.000000Z', 8, 'retry', 'boom'),
               (4, 1, '2026-05-01T12:00:04.000000Z', 9, 'dead', 'gave up')";

    /// Every attempt, in a form both backends print alike.
    const LIST_ATTEMPTS: &str = "
        SELECT delivery_id, attempt, duration_ms, outcome, coalesce(error, '-') FROM attempts
        ORDER BY delivery_id, attempt";

    type AttemptRow = (i64, i32, i64, String, String);

    fn expected_attempts() -> Vec<AttemptRow> {
        [
            (1, 1, 5, "retry", "boom"),
            (1, 2, 6, "succeeded", "-"),
            (2, 1, 7, "dead", "fatal: no"),
            (3, 1, 8, "retry", "boom"),
            (4, 1, 9, "dead", "gave up"),
        ]
        .into_iter()
        .map(|(d, a, ms, outcome, error)| (d, a, ms, outcome.to_owned(), error.to_owned()))
        .collect()
    }

    /// On `$conn`, migrated up to the one under test: seeds `$seed` (an event and the
    /// four deliveries of [`OLD_ATTEMPTS`]) and those attempts, applies `$all`, and
    /// checks that the `attempts` view lists the same attempts as the table did, with
    /// only the retries left in `earlier_attempts`. A macro because the two backends'
    /// connections share no trait that also runs migrations.
    macro_rules! assert_final_attempts_move {
        ($conn:expr, $seed:expr, $all:expr) => {{
            for statement in $seed.into_iter().chain([OLD_ATTEMPTS]) {
                sqlx::query(statement).execute(&mut *$conn).await.unwrap();
            }
            let before: Vec<AttemptRow> = sqlx::query_as(LIST_ATTEMPTS)
                .fetch_all(&mut *$conn)
                .await
                .unwrap();
            assert_eq!(before, expected_attempts());

            run($all, &mut *$conn).await.unwrap();

            let after: Vec<AttemptRow> = sqlx::query_as(LIST_ATTEMPTS)
                .fetch_all(&mut *$conn)
                .await
                .unwrap();
            assert_eq!(after, expected_attempts());
            let earlier: Vec<(i64, i32)> =
                sqlx::query_as("SELECT delivery_id, attempt FROM earlier_attempts ORDER BY 1")
                    .fetch_all(&mut *$conn)
                    .await
                    .unwrap();
            assert_eq!(earlier, vec![(1, 1), (3, 1)]);
        }};
    }

    #[tokio::test]
    async fn sqlite_final_attempts_move_onto_their_deliveries() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        run(Embedded(&SQLITE.0[..4], SQLITE.1), &mut conn)
            .await
            .unwrap();
        let seed = [
            "INSERT INTO events (id, source_name, source, type, time, received_at)
             VALUES ('e', 's', '/s', 't', '2026-05-01T12:00:00.000000Z',
                     '2026-05-01T12:00:00.000000Z')",
            "INSERT INTO deliveries (event_id, trigger, status, attempts, last_error, run_at,
                                     created_at, updated_at)
             VALUES ('e', 't', 'succeeded', 2, NULL, 'x', 'x', 'x'),
                    ('e', 't', 'dead', 1, 'fatal: no', 'x', 'x', 'x'),
                    ('e', 't', 'pending', 1, 'boom', 'x', 'x', 'x'),
                    ('e', 't', 'replayed', 1, 'gave up', 'x', 'x', 'x')",
        ];
        assert_final_attempts_move!(&mut conn, seed, SQLITE);
        let started: Option<String> =
            sqlx::query_scalar("SELECT final_started_at FROM deliveries WHERE id = 1")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(started.as_deref(), Some("2026-05-01T12:00:01.000000Z"));
    }

    /// A delivery that was `running` when the migration that leaves claimed deliveries
    /// `pending` ran is `pending` under the same lease afterwards, so its holder can
    /// still finish it.
    #[tokio::test]
    async fn sqlite_running_deliveries_keep_their_lease() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        run(Embedded(&SQLITE.0[..5], SQLITE.1), &mut conn)
            .await
            .unwrap();
        for statement in [
            "INSERT INTO events (id, source_name, source, type, time, received_at)
             VALUES ('e', 's', '/s', 't', '2026-05-01T12:00:00.000000Z',
                     '2026-05-01T12:00:00.000000Z')",
            "INSERT INTO deliveries (event_id, trigger, status, attempts, lease_token,
                                     lease_expires_at, run_at, created_at, updated_at)
             VALUES ('e', 't', 'running', 1, 'token', '2026-05-01T12:01:00.000000Z', 'x', 'x',
                     'x'),
                    ('e', 't', 'succeeded', 1, NULL, NULL, 'x', 'x', 'x')",
        ] {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }

        run(SQLITE, &mut conn).await.unwrap();

        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT status, lease_token FROM deliveries ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(
            rows,
            [
                ("pending".to_owned(), Some("token".to_owned())),
                ("succeeded".to_owned(), None)
            ]
        );
    }

    /// A new database on the test Postgres server, with an empty `switchyard` schema
    /// on the search path of the returned connection, and the admin connection that
    /// [`drop_scratch`] drops it with.
    async fn scratch_database() -> (PgConnection, String, PgConnection) {
        let admin_url = std::env::var("SWITCHYARD_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|error| {
            panic!("this test needs a Postgres server at {admin_url} (set SWITCHYARD_TEST_PG): {error}")
        });
        let name = format!("sy_migrate_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("{admin_url} names no database"),
        };
        let mut conn = PgConnection::connect(&url).await.unwrap();
        for statement in ["CREATE SCHEMA switchyard", "SET search_path TO switchyard"] {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
        (admin, name, conn)
    }

    async fn drop_scratch(mut admin: PgConnection, name: &str, conn: PgConnection) {
        conn.close().await.unwrap();
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
    }

    /// Leaves its database behind when it fails, for a look at it.
    #[tokio::test]
    async fn postgres_final_attempts_move_onto_their_deliveries() {
        let (admin, name, mut conn) = scratch_database().await;
        run(Embedded(&POSTGRES.0[..5], POSTGRES.1), &mut conn)
            .await
            .unwrap();
        let seed = [
            "INSERT INTO events (id, source_name, source, type, time)
             VALUES ('0190a0f0-0000-7000-8000-000000000001', 's', '/s', 't', now())",
            "INSERT INTO deliveries (event_id, trigger, status, attempts, last_error)
             VALUES ('0190a0f0-0000-7000-8000-000000000001', 't', 'succeeded', 2, NULL),
                    ('0190a0f0-0000-7000-8000-000000000001', 't', 'dead', 1, 'fatal: no'),
                    ('0190a0f0-0000-7000-8000-000000000001', 't', 'pending', 1, 'boom'),
                    ('0190a0f0-0000-7000-8000-000000000001', 't', 'replayed', 1, 'gave up')",
        ];
        assert_final_attempts_move!(&mut conn, seed, POSTGRES);
        drop_scratch(admin, &name, conn).await;
    }

    /// A delivery that was `running` when the migration to HOT claims ran is `pending`
    /// under the same lease afterwards, so its holder can still finish it. Leaves its
    /// database behind when it fails.
    #[tokio::test]
    async fn postgres_running_deliveries_keep_their_lease_when_claims_become_hot() {
        let (admin, name, mut conn) = scratch_database().await;
        run(Embedded(&POSTGRES.0[..6], POSTGRES.1), &mut conn)
            .await
            .unwrap();
        let token = "0190a0f0-0000-7000-8000-0000000000aa";
        for statement in [
            "INSERT INTO events (id, source_name, source, type, time)
             VALUES ('0190a0f0-0000-7000-8000-000000000001', 's', '/s', 't', now())"
                .to_owned(),
            format!(
                "INSERT INTO deliveries (event_id, trigger, status, attempts, lease_token,
                                         lease_expires_at)
                 VALUES ('0190a0f0-0000-7000-8000-000000000001', 't', 'running', 1, '{token}',
                         now() + interval '1 minute'),
                        ('0190a0f0-0000-7000-8000-000000000001', 't', 'succeeded', 1, NULL,
                         NULL)"
            ),
        ] {
            sqlx::query(&statement).execute(&mut conn).await.unwrap();
        }

        run(POSTGRES, &mut conn).await.unwrap();

        let rows: Vec<(String, Option<uuid::Uuid>)> =
            sqlx::query_as("SELECT status, lease_token FROM deliveries ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let token = Some(token.parse().unwrap());
        assert_eq!(
            rows,
            [
                ("pending".to_owned(), token),
                ("succeeded".to_owned(), None)
            ]
        );
        let options: Option<Vec<String>> = sqlx::query_scalar(
            "SELECT reloptions FROM pg_class WHERE oid = 'switchyard.deliveries'::regclass",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(options, Some(vec!["fillfactor=40".to_owned()]));
        drop_scratch(admin, &name, conn).await;
    }
}
