//! Exclusive readers' claims of the SQLite store: the `reader_claims` table, one row per
//! partition key, decided by [`ClaimOutcome::decide`] inside an immediate transaction (which
//! holds SQLite's write lock, so concurrent claims are decided one after the other). Written on
//! the runtime connection, as endpoint leases are: renewed every few seconds, they need not
//! cost an fsync each, and a claim lost to a power cut only frees a partition whose readers
//! are gone with the server.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ironhub_store::{ClaimOutcome, ReaderClaim, ReaderClaimStore};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::rows::{from_millis, millis};
use crate::sqlite::SqliteStore;

type StoreResult<T> = ironhub_store::Result<T>;

fn load(conn: &rusqlite::Connection, key: &str) -> crate::error::Result<Option<ReaderClaim>> {
    Ok(conn
        .prepare_cached("SELECT holder, epoch, lease_until FROM reader_claims WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(ReaderClaim {
                key: key.to_owned(),
                holder: r.get(0)?,
                epoch: r.get(1)?,
                until: from_millis(r.get(2)?),
            })
        })
        .optional()?)
}

#[async_trait]
impl ReaderClaimStore for SqliteStore {
    async fn claim_reader(
        &self,
        claim: ReaderClaim,
        now: DateTime<Utc>,
    ) -> StoreResult<ClaimOutcome> {
        self.with_runtime(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = load(&tx, &claim.key)?;
            let outcome = ClaimOutcome::decide(current.as_ref(), &claim, now);
            if matches!(outcome, ClaimOutcome::Granted { .. }) {
                tx.prepare_cached(
                    "INSERT INTO reader_claims (key, holder, epoch, lease_until) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (key) DO UPDATE SET holder = excluded.holder,
                         epoch = excluded.epoch, lease_until = excluded.lease_until",
                )?
                .execute(params![
                    claim.key,
                    claim.holder,
                    claim.epoch,
                    millis(claim.until)
                ])?;
            }
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn renew_reader(
        &self,
        key: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (key, holder) = (key.to_owned(), holder.to_owned());
        self.with_runtime(move |conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE reader_claims SET lease_until = ?3 WHERE key = ?1 AND holder = ?2",
                )?
                .execute(params![key, holder, millis(until)])?
                == 1)
        })
        .await
    }

    async fn release_reader(&self, key: &str, holder: &str) -> StoreResult<()> {
        let (key, holder) = (key.to_owned(), holder.to_owned());
        self.with_runtime(move |conn| {
            conn.prepare_cached("DELETE FROM reader_claims WHERE key = ?1 AND holder = ?2")?
                .execute(params![key, holder])?;
            Ok(())
        })
        .await
    }

    async fn reader_claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ReaderClaim>> {
        let key = key.to_owned();
        self.with_runtime(move |conn| Ok(load(conn, &key)?.filter(|c| c.until > now)))
            .await
    }
}
