//! The runtime state a hub's move copies besides its records (see `crate::hub_move`):
//! persistent MQTT sessions, and the feedback and file upload notifications waiting for
//! services, each through the store's move port ([`ironhub_store::MoveStore`]).

use ironhub_store::{ServiceQueue, Store};

use crate::hub_move_tally::Tally;

/// How many records one read or write carries.
const PAGE: usize = 500;

/// Persistent MQTT sessions (clean session 0) with their subscriptions, by client id; a
/// session the target holds already is written again (the same subscriptions).
pub async fn sessions(source: &dyn Store, target: &dyn Store) -> anyhow::Result<Tally> {
    let mut t = Tally::new("persistent MQTT sessions");
    let mut after: Option<String> = None;
    loop {
        let page = source.mqtt_sessions_page(after.as_deref(), PAGE).await?;
        after = page.last().map(|(id, _)| id.clone());
        let full = page.len() == PAGE;
        for (client_id, subscriptions) in page {
            t.read += 1;
            target
                .set_mqtt_session(&client_id, Some(subscriptions))
                .await?;
            t.written += 1;
        }
        if !full {
            break;
        }
    }
    t.counted = count_sessions(target).await?;
    Ok(t)
}

async fn count_sessions(store: &dyn Store) -> anyhow::Result<u64> {
    let (mut n, mut after) = (0, None::<String>);
    loop {
        let page = store.mqtt_sessions_page(after.as_deref(), PAGE).await?;
        n += page.len() as u64;
        if page.len() < PAGE {
            return Ok(n);
        }
        after = page.last().map(|(id, _)| id.clone());
    }
}

/// One of the queues services read, in order, as it was (document, times, delivery count;
/// a lock is dropped, so what a service had received is visible again); resumes after as
/// many records as the target's queue holds.
pub async fn queue(
    source: &dyn Store,
    target: &dyn Store,
    queue: ServiceQueue,
) -> anyhow::Result<Tally> {
    let mut t = Tally::new(match queue {
        ServiceQueue::Feedback => "cloud-to-device feedback waiting for services",
        ServiceQueue::FileNotifications => "file upload notifications",
    });
    let mut skip = count_queue(target, queue).await?;
    let mut after = None;
    loop {
        let page = source.queue_page(queue, after, PAGE).await?;
        after = page.last().map(|r| r.position);
        let full = page.len() == PAGE;
        t.read += page.len() as u64;
        let copied = usize::try_from(skip).unwrap_or(usize::MAX).min(page.len());
        skip -= copied as u64;
        t.written += copied as u64;
        let fresh: Vec<_> = page.into_iter().skip(copied).collect();
        if !fresh.is_empty() {
            let n = fresh.len() as u64;
            target.queue_import(queue, fresh).await?;
            t.written += n;
        }
        if !full {
            break;
        }
    }
    t.counted = count_queue(target, queue).await?;
    Ok(t)
}

async fn count_queue(store: &dyn Store, queue: ServiceQueue) -> anyhow::Result<u64> {
    let (mut n, mut after) = (0, None);
    loop {
        let page = store.queue_page(queue, after, PAGE).await?;
        n += page.len() as u64;
        if page.len() < PAGE {
            return Ok(n);
        }
        after = page.last().map(|r| r.position);
    }
}
