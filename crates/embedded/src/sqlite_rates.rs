//! Rate windows in the SQLite store: one row per key and window, added to with an upsert on
//! the runtime connection (`synchronous=NORMAL`: counts are best effort, like connection
//! state). The table is created on first use rather than by a migration, as nothing in it
//! outlives a few seconds.

use async_trait::async_trait;
use ironhub_store::{RateWindows, WindowCount};
use rusqlite::{Connection, TransactionBehavior};

use crate::sqlite::SqliteStore;

type StoreResult<T> = ironhub_store::Result<T>;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS rate_windows (
    key TEXT NOT NULL,
    win INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (key, win)
) WITHOUT ROWID";

fn ensure_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(CREATE)?.execute([])?;
    Ok(())
}

/// A window number or count as SQLite's signed integer (saturating: no real count nears it).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl RateWindows for SqliteStore {
    async fn add_to_windows(&self, counts: Vec<WindowCount>) -> StoreResult<Vec<u64>> {
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        self.with_runtime(move |conn| {
            ensure_table(conn)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut totals = Vec::with_capacity(counts.len());
            {
                let mut add = tx.prepare_cached(
                    "INSERT INTO rate_windows (key, win, count) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key, win) DO UPDATE SET count = count + excluded.count
                     RETURNING count",
                )?;
                for c in &counts {
                    let total: i64 = add
                        .query_row(rusqlite::params![c.key, int(c.window), int(c.count)], |r| {
                            r.get(0)
                        })?;
                    totals.push(u64::try_from(total).unwrap_or(0));
                }
            }
            tx.commit()?;
            Ok(totals)
        })
        .await
    }

    async fn forget_windows_before(&self, window: u64) -> StoreResult<u64> {
        self.with_runtime(move |conn| {
            ensure_table(conn)?;
            let gone = conn
                .prepare_cached("DELETE FROM rate_windows WHERE win < ?1")?
                .execute([int(window)])?;
            Ok(u64::try_from(gone).unwrap_or(0))
        })
        .await
    }
}
