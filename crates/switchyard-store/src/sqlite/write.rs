//! The SQLite backend's write path: the write gate every write of this process
//! queues on, and the write transaction that holds it.

use std::ops::{Deref, DerefMut};

use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection, Transaction};
use tokio::sync::MutexGuard;

use super::{SqliteStore, WAIT, sql};
use crate::{Result, StoreError};

/// A write transaction: it holds SQLite's write lock from its first statement and the
/// store's write gate until it ends. Dereferences to its connection.
pub(super) struct WriteTransaction<'a> {
    tx: Transaction<'static, Sqlite>,
    _gate: MutexGuard<'a, ()>,
}

impl<'a> WriteTransaction<'a> {
    /// Begins a transaction on `pool` that takes the write lock at once, holding `gate`
    /// until it ends.
    async fn begin(pool: &SqlitePool, gate: MutexGuard<'a, ()>) -> Result<Self> {
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

impl SqliteStore {
    /// Waits for this process's earlier writes, as long as a connection may be waited
    /// for: a writer that has waited that long answers as one that found no connection.
    pub(super) async fn gate(&self) -> Result<MutexGuard<'_, ()>> {
        tokio::time::timeout(WAIT, self.gate.lock())
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolTimedOut))
    }

    /// Starts a write transaction on the main pool.
    pub(super) async fn write(&self) -> Result<WriteTransaction<'_>> {
        self.write_on(&self.pool).await
    }

    /// Starts a write transaction on `pool`, once this process's earlier writes are done.
    pub(super) async fn write_on(&self, pool: &SqlitePool) -> Result<WriteTransaction<'_>> {
        let gate = self.gate().await?;
        WriteTransaction::begin(pool, gate).await
    }
}
