//! The service-bound queues a service receives from over AMQP (Azure docs, "Communicate with
//! your IoT hub by using the AMQP Protocol", service client section): delivery feedback on
//! `/messages/serviceBound/feedback` and file upload notifications on
//! `/messages/serviceBound/filenotifications`. Each message is what the REST feed serves (the
//! same domain calls, the same JSON), locked while it is out: the service's `accepted`
//! completes it, any other outcome abandons it (it comes again, as over REST). The link is
//! closed once its token lapses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fe2o3_amqp::Sender;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Data, Message, MessageId, Outcome, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, SimpleValue, Symbol};
use ironhub_hub::c2d::feedback_views;
use ironhub_hub::{Hub, HubError};
use tokio::sync::watch;

use crate::errors::{hub_error, lapsed};
use crate::message::timestamp;

/// How often a link looks for a new message when there was none.
const POLL: Duration = Duration::from_secs(1);

/// Which service-bound queue a link reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Feedback,
    FileNotifications,
}

/// A locked message of a queue, as the service receives it.
struct Locked {
    lock_token: String,
    delivery_count: u32,
    enqueued_time: DateTime<Utc>,
    body: Vec<u8>,
}

impl Queue {
    /// The path of the queue's node (what a token must cover).
    pub fn path(self) -> &'static str {
        match self {
            Queue::Feedback => "/messages/servicebound/feedback",
            Queue::FileNotifications => "/messages/servicebound/filenotifications",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Queue::Feedback => "application/vnd.microsoft.iothub.feedback.json",
            Queue::FileNotifications => "application/vnd.microsoft.iothub.filenotification.json",
        }
    }

    /// The next message not locked by another receiver, locked for this one.
    async fn receive(self, hub: &Hub) -> Result<Option<Locked>, HubError> {
        Ok(match self {
            Queue::Feedback => hub.receive_feedback().await?.map(|batch| Locked {
                body: serde_json::to_vec(&feedback_views(&batch)).unwrap_or_default(),
                lock_token: batch.lock_token,
                delivery_count: batch.delivery_count,
                enqueued_time: batch.enqueued_time,
            }),
            Queue::FileNotifications => {
                hub.receive_file_notification().await?.map(|locked| Locked {
                    body: serde_json::to_vec(&locked.notification).unwrap_or_default(),
                    enqueued_time: locked.notification.enqueued_time_utc,
                    lock_token: locked.lock_token,
                    delivery_count: locked.delivery_count,
                })
            }
        })
    }

    async fn settle(self, hub: &Hub, lock_token: &str, complete: bool) -> Result<(), HubError> {
        match self {
            Queue::Feedback => hub.settle_feedback(lock_token, complete).await,
            Queue::FileNotifications => hub.settle_file_notification(lock_token, complete).await,
        }
    }

    /// The AMQP message of a locked one: the lock token as message id, the queue's path as
    /// `to`, the content type, the enqueued time and `iothub-deliverycount`, as the REST feed
    /// sends them in headers.
    fn message(self, locked: Locked) -> Message<Data> {
        let mut application = OrderedMap::new();
        application.insert(
            "iothub-deliverycount".to_owned(),
            SimpleValue::Uint(locked.delivery_count),
        );
        Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                message_id: Some(MessageId::String(locked.lock_token)),
                to: Some(self.path().to_owned()),
                content_type: Some(Symbol::from(self.content_type())),
                creation_time: Some(timestamp(locked.enqueued_time)),
                ..Properties::default()
            }),
            application_properties: Some(ApplicationProperties(application)),
            body: Data(Binary::from(locked.body)),
            footer: None,
        }
    }
}

/// Sends `queue`'s messages on `sender` until the service detaches, the connection ends or
/// `authorized` says the link's token lapsed; each is settled by the service's outcome.
pub async fn send(
    mut sender: Sender,
    queue: Queue,
    hub: Hub,
    mut closed: watch::Receiver<bool>,
    authorized: impl Fn() -> bool,
) {
    loop {
        if !authorized() {
            let _ = sender.close_with_error(lapsed()).await;
            return;
        }
        let locked = match queue.receive(&hub).await {
            Ok(Some(locked)) => locked,
            Ok(None) => {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => continue,
                    _ = sender.on_detach() => return,
                    _ = closed.changed() => return,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, ?queue, "reading a service-bound queue for an AMQP link failed");
                let _ = sender.close_with_error(hub_error(&e)).await;
                return;
            }
        };
        let lock_token = locked.lock_token.clone();
        let outcome = tokio::select! {
            o = sender.send(queue.message(locked)) => o,
            _ = closed.changed() => {
                // Not settled: abandoned, so it comes again at once rather than after its lock.
                let _ = queue.settle(&hub, &lock_token, false).await;
                return;
            }
        };
        let complete = matches!(outcome, Ok(Outcome::Accepted(_)));
        if let Err(e) = queue.settle(&hub, &lock_token, complete).await {
            tracing::debug!(error = %e, ?queue, "settling a service-bound message failed");
        }
        if outcome.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_locked_message_carries_its_lock_token_path_type_and_delivery_count() {
        let locked = Locked {
            lock_token: "lock-1".into(),
            delivery_count: 2,
            enqueued_time: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap(),
            body: b"{}".to_vec(),
        };
        let m = Queue::FileNotifications.message(locked);
        let p = m.properties.unwrap();
        assert_eq!(p.message_id, Some(MessageId::String("lock-1".into())));
        assert_eq!(
            p.to.as_deref(),
            Some("/messages/servicebound/filenotifications")
        );
        assert_eq!(
            p.content_type.unwrap().as_str(),
            "application/vnd.microsoft.iothub.filenotification.json"
        );
        assert_eq!(p.creation_time.unwrap().milliseconds(), 1_700_000_000_000);
        let application = m.application_properties.unwrap();
        assert_eq!(
            application.0.get("iothub-deliverycount"),
            Some(&SimpleValue::Uint(2))
        );
        assert_eq!(m.body.0.to_vec(), b"{}");
    }
}
