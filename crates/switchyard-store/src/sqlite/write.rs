//! The SQLite backend's write transaction.

use std::ops::{Deref, DerefMut};

use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection, Transaction};
use tokio::sync::MutexGuard;

use super::sql;
use crate::Result;

/// A write transaction: it holds SQLite's write lock from its first statement and the
/// store's write gate until it ends. Dereferences to its connection.
pub(super) struct WriteTransaction<'a> {
    tx: Transaction<'static, Sqlite>,
    _gate: MutexGuard<'a, ()>,
}

impl<'a> WriteTransaction<'a> {
    /// Begins a transaction on `pool` that takes the write lock at once, holding `gate`
    /// until it ends.
    pub(super) async fn begin(pool: &SqlitePool, gate: MutexGuard<'a, ()>) -> Result<Self> {
        Ok(Self {
            tx: pool.begin_with(sql::BEGIN_WRITE).await?,
            _gate: gate,
        })
    }

    pub(super) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Deref for WriteTransaction<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for WriteTransaction<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}
