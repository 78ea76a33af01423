//! Rate windows on PostgreSQL: one row per key and window in an unlogged table (counts live a
//! few seconds and are best effort, as the embedded engine keeps them), added to with upserts
//! that each return the total every node has counted.

use async_trait::async_trait;
use ironhub_store::{RateWindows, Result, WindowCount};

use crate::PgStore;
use crate::store::db;

/// A window number or count as PostgreSQL's signed integer (saturating: no real count nears it).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl RateWindows for PgStore {
    async fn add_to_windows(&self, counts: Vec<WindowCount>) -> Result<Vec<u64>> {
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        // Rows are locked in one order whatever the caller's, so two nodes adding to the same
        // keys never deadlock.
        let mut order: Vec<usize> = (0..counts.len()).collect();
        order.sort_by(|a, b| {
            let (a, b) = (&counts[*a], &counts[*b]);
            (&a.key, a.window).cmp(&(&b.key, b.window))
        });
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let add = tx
            .prepare(
                "INSERT INTO rate_windows (key, win, count) VALUES ($1, $2, $3)
                 ON CONFLICT (key, win) DO UPDATE SET count = rate_windows.count + excluded.count
                 RETURNING count",
            )
            .await
            .map_err(db)?;
        let mut totals = vec![0; counts.len()];
        for i in order {
            let c = &counts[i];
            let total: i64 = tx
                .query_one(&add, &[&c.key, &int(c.window), &int(c.count)])
                .await
                .map_err(db)?
                .get(0);
            totals[i] = u64::try_from(total).unwrap_or(0);
        }
        tx.commit().await.map_err(db)?;
        Ok(totals)
    }

    async fn forget_windows_before(&self, window: u64) -> Result<u64> {
        self.client()
            .await?
            .execute("DELETE FROM rate_windows WHERE win < $1", &[&int(window)])
            .await
            .map_err(db)
    }
}
