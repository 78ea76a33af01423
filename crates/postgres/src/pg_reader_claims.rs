//! Exclusive readers' claims on PostgreSQL: the `reader_claims` table, one row per partition
//! key. A claim is decided by [`ClaimOutcome::decide`] in one transaction: an insert that does
//! nothing when the key has a row (a concurrent insert of the same key waits for the first to
//! commit), then the row locked (`FOR UPDATE`) and decided against, so claims made together
//! on any nodes are decided one after the other. Times are Unix milliseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ironhub_store::{ClaimOutcome, ReaderClaim, ReaderClaimStore, Result};

use crate::PgStore;
use crate::store::db;

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn row_claim(key: &str, row: &tokio_postgres::Row) -> ReaderClaim {
    ReaderClaim {
        key: key.to_owned(),
        holder: row.get(0),
        epoch: row.get(1),
        until: from_millis(row.get(2)),
    }
}

#[async_trait]
impl ReaderClaimStore for PgStore {
    async fn claim_reader(&self, claim: ReaderClaim, now: DateTime<Utc>) -> Result<ClaimOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let until = claim.until.timestamp_millis();
        let inserted = tx
            .execute(
                "INSERT INTO reader_claims (key, holder, epoch, lease_until) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO NOTHING",
                &[&claim.key, &claim.holder, &claim.epoch, &until],
            )
            .await
            .map_err(db)?;
        if inserted == 1 {
            tx.commit().await.map_err(db)?;
            return Ok(ClaimOutcome::Granted { displaced: None });
        }
        let current = tx
            .query_opt(
                "SELECT holder, epoch, lease_until FROM reader_claims WHERE key = $1 FOR UPDATE",
                &[&claim.key],
            )
            .await
            .map_err(db)?
            .map(|row| row_claim(&claim.key, &row));
        let outcome = ClaimOutcome::decide(current.as_ref(), &claim, now);
        if matches!(outcome, ClaimOutcome::Granted { .. }) {
            // The row may have been released meanwhile: an upsert covers both.
            tx.execute(
                "INSERT INTO reader_claims (key, holder, epoch, lease_until) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET holder = excluded.holder,
                     epoch = excluded.epoch, lease_until = excluded.lease_until",
                &[&claim.key, &claim.holder, &claim.epoch, &until],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn renew_reader(&self, key: &str, holder: &str, until: DateTime<Utc>) -> Result<bool> {
        let renewed = self
            .client()
            .await?
            .execute(
                "UPDATE reader_claims SET lease_until = $3 WHERE key = $1 AND holder = $2",
                &[&key, &holder, &until.timestamp_millis()],
            )
            .await
            .map_err(db)?;
        Ok(renewed == 1)
    }

    async fn release_reader(&self, key: &str, holder: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "DELETE FROM reader_claims WHERE key = $1 AND holder = $2",
                &[&key, &holder],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn reader_claim(&self, key: &str, now: DateTime<Utc>) -> Result<Option<ReaderClaim>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT holder, epoch, lease_until FROM reader_claims WHERE key = $1",
                &[&key],
            )
            .await
            .map_err(db)?;
        Ok(row
            .map(|row| row_claim(key, &row))
            .filter(|c| c.until > now))
    }
}
