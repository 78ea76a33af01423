//! Devices' runtime updates (connection state, activity) committed in groups on the runtime
//! connection: an update waiting while a group is written joins the next one, so a storm of
//! CONNECTs makes one blocking-pool hop and one transaction a group instead of one each. Each
//! caller hears back only once its group is committed (`synchronous=NORMAL`: it survives
//! `kill -9`), as before; a failed group fails each of its updates.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use ironhub_store::{RuntimeUpdate, StoreError};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::Result;

type StoreResult<T> = ironhub_store::Result<T>;

/// Most updates committed in one transaction.
const MAX_GROUP: usize = 512;

/// One device's update: its id, the update, the time its read counts messages by, and who
/// waits for whether the device exists.
struct Update {
    id: String,
    update: RuntimeUpdate,
    now: DateTime<Utc>,
    reply: oneshot::Sender<StoreResult<bool>>,
}

/// Updates waiting for the next group, and whether a group is being written.
#[derive(Default)]
struct Pending {
    updates: Vec<Update>,
    writing: bool,
}

/// Applies one device's update inside a group's transaction; whether the device exists.
pub(crate) type Apply = fn(&Connection, &str, &RuntimeUpdate, DateTime<Utc>) -> Result<bool>;

/// The queue of runtime updates of one store; see the module documentation.
pub(crate) struct RuntimeBatch {
    pending: Mutex<Pending>,
    apply: Apply,
}

impl std::fmt::Debug for RuntimeBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBatch").finish_non_exhaustive()
    }
}

impl RuntimeBatch {
    /// An empty queue whose groups apply each update with `apply`.
    pub(crate) fn new(apply: Apply) -> Self {
        Self {
            pending: Mutex::default(),
            apply,
        }
    }

    /// Applies `update` to device `id` with the other updates of its group, on `conn`;
    /// whether the device exists.
    pub(crate) async fn update(
        self: &Arc<Self>,
        conn: &Arc<Mutex<Connection>>,
        id: String,
        update: RuntimeUpdate,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut pending = lock(&self.pending);
            pending.updates.push(Update {
                id,
                update,
                now,
                reply,
            });
            !std::mem::replace(&mut pending.writing, true)
        };
        if start {
            let (batch, conn) = (self.clone(), conn.clone());
            tokio::task::spawn_blocking(move || batch.write_groups(&conn));
        }
        answer
            .await
            .map_err(|_| StoreError::Engine("a runtime update was lost".into()))?
    }

    /// Writes groups until none is waiting.
    fn write_groups(&self, conn: &Mutex<Connection>) {
        // Should writing panic, the updates waiting are failed (their senders dropped) and
        // the next update starts writing again.
        let _reset = Reset(self);
        loop {
            let group: Vec<Update> = {
                let mut pending = lock(&self.pending);
                if pending.updates.is_empty() {
                    pending.writing = false;
                    return;
                }
                let n = pending.updates.len().min(MAX_GROUP);
                pending.updates.drain(..n).collect()
            };
            let result = match conn.lock() {
                Ok(mut conn) => apply_group(&mut conn, &group, self.apply),
                Err(_) => Err(StoreError::Engine("a store operation panicked".into()).into()),
            };
            match result {
                Ok(found) => {
                    for (update, found) in group.into_iter().zip(found) {
                        let _ = update.reply.send(Ok(found));
                    }
                }
                Err(e) => {
                    let e = StoreError::from(e);
                    for update in group {
                        let _ = update.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// On unwinding out of [`RuntimeBatch::write_groups`]: fails what waits, lets the next
/// update write.
struct Reset<'a>(&'a RuntimeBatch);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut pending = lock(&self.0.pending);
            pending.updates.clear();
            pending.writing = false;
        }
    }
}

/// The queue, even if a writer panicked holding it (it holds no invariant a panic breaks).
fn lock(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every update of `group` in one transaction; whether each device exists.
fn apply_group(conn: &mut Connection, group: &[Update], apply: Apply) -> Result<Vec<bool>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut found = Vec::with_capacity(group.len());
    for u in group {
        found.push(apply(&tx, &u.id, &u.update, u.now)?);
    }
    tx.commit()?;
    Ok(found)
}
