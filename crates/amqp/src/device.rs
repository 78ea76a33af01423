//! The devices (and modules, each its own identity) of one AMQP connection, by identity key
//! (`deviceId` or `deviceId/moduleId`): each device whose links are up holds one domain session
//! ([`Hub::connect_device`]: connected, on the device bus, taking over an earlier connection),
//! opened by its first link and closed with its last. A task per device reads what the bus
//! brings it (cloud-to-device hints, desired patches, method calls) and hands it to the link
//! that carries it; when the session is taken over or revoked, or the device's token lapses
//! without renewal, every link of the device is closed with the reason.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fe2o3_amqp::types::definitions::{AmqpError, Error, LinkError};
use ironhub_hub::{AuthenticatedDevice, DeviceIdentity, DeviceSession, Hub};
use ironhub_store::{BusError, BusMessage, MethodCall};
use tokio::sync::{Notify, mpsc, watch};

use crate::claims::Claims;
use crate::device_messages::{Outgoing, desired_patch, method_request};
use crate::errors::{error, lapsed};

/// What the links of one device share.
#[derive(Debug, Default)]
pub struct DeviceState {
    /// Rung when cloud-to-device messages may be waiting.
    pub c2d: Notify,
    /// The twin link answers and desired patches go out on.
    pub twin_out: Mutex<Option<mpsc::Sender<Outgoing>>>,
    /// Whether the device asked for desired-property patches.
    pub desired: AtomicBool,
    /// The methods link calls go out on.
    pub methods_out: Mutex<Option<mpsc::Sender<Outgoing>>>,
    /// Method calls sent to the device and not yet answered.
    pub pending_methods: Mutex<HashSet<u64>>,
    /// Rung when a module's input messages may be waiting (`…/messages/events`).
    pub inputs: Notify,
}

/// A link's share of its device: who it is, the shared state, and the signal that closes
/// every link of the device (with the error to close it with).
#[derive(Debug)]
pub struct DeviceLink {
    pub identity: DeviceIdentity,
    pub state: Arc<DeviceState>,
    pub stop: watch::Receiver<Option<Error>>,
    devices: Devices,
    generation: u64,
}

impl DeviceLink {
    /// Gives up the link's place; the device's session ends with its last link.
    pub fn leave(self) {
        self.devices.leave(&self.identity.key(), self.generation);
    }

    /// Waits until the device's links are told to close; the error to close with.
    pub async fn stopped(stop: &mut watch::Receiver<Option<Error>>) -> Error {
        loop {
            if let Some(e) = stop.borrow_and_update().clone() {
                return e;
            }
            if stop.changed().await.is_err() {
                return error(AmqpError::InternalError, "The device's session ended.");
            }
        }
    }
}

impl Drop for DeviceLink {
    fn drop(&mut self) {
        self.devices.leave(&self.identity.key(), self.generation);
    }
}

#[derive(Debug)]
struct Entry {
    identity: DeviceIdentity,
    generation: u64,
    links: usize,
    state: Arc<DeviceState>,
    stop: watch::Receiver<Option<Error>>,
    /// Tells the device's task that its last link is gone.
    done: watch::Sender<bool>,
}

/// The devices of one connection.
#[derive(Debug, Clone, Default)]
pub struct Devices {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    generations: Arc<AtomicU64>,
    /// Held while a link joins: two links of a device attaching at once (the SDKs attach
    /// several together) must share one session, not take each other over.
    joining: Arc<tokio::sync::Mutex<()>>,
}

impl Devices {
    /// A link of `device` joins: the first one opens the device's session.
    pub async fn join(
        &self,
        hub: &Hub,
        claims: &Claims,
        device: AuthenticatedDevice,
    ) -> DeviceLink {
        let id = device.identity.key();
        let _joining = self.joining.lock().await;
        if let Some(link) = self.join_existing(&id) {
            return link;
        }
        // Connected (and any earlier connection taken over) before the link is answered.
        let session = hub.connect_device(device).await;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(DeviceState::default());
        let (stop_tx, stop) = watch::channel(None);
        let (done, done_rx) = watch::channel(false);
        let identity = session.identity().clone();
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                id.clone(),
                Entry {
                    identity: identity.clone(),
                    generation,
                    links: 1,
                    state: state.clone(),
                    stop: stop.clone(),
                    done,
                },
            );
        }
        let device_session = run(
            session,
            state.clone(),
            stop_tx,
            done_rx,
            claims.clone(),
            self.clone(),
            generation,
        );
        // The device's connection is its caller (a task-local) for the session's life.
        let caller = ironhub_observe::caller::current();
        tokio::spawn(ironhub_observe::caller::within(caller, device_session));
        DeviceLink {
            identity,
            state,
            stop,
            devices: self.clone(),
            generation,
        }
    }

    fn join_existing(&self, id: &str) -> Option<DeviceLink> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get_mut(id)?;
        entry.links += 1;
        Some(DeviceLink {
            identity: entry.identity.clone(),
            state: entry.state.clone(),
            stop: entry.stop.clone(),
            devices: self.clone(),
            generation: entry.generation,
        })
    }

    fn leave(&self, id: &str, generation: u64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let Some(entry) = entries.get_mut(id) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        entry.links = entry.links.saturating_sub(1);
        if entry.links == 0
            && let Some(entry) = entries.remove(id)
        {
            let _ = entry.done.send(true);
        }
    }

    /// Forgets the device's entry once its task ended (if it is still that task's).
    fn forget(&self, id: &str, generation: u64) {
        if let Ok(mut entries) = self.entries.lock()
            && entries.get(id).is_some_and(|e| e.generation == generation)
        {
            entries.remove(id);
        }
    }

    /// Ends every device's session: the connection is gone.
    pub fn close_all(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            for (_, entry) in entries.drain() {
                let _ = entry.done.send(true);
            }
        }
    }
}

/// The device's task: hands what the bus brings to the device's links, watches its token, and
/// closes the session when the last link is gone or the links are told to close.
async fn run(
    mut session: DeviceSession,
    state: Arc<DeviceState>,
    stop: watch::Sender<Option<Error>>,
    mut done: watch::Receiver<bool>,
    claims: Claims,
    devices: Devices,
    generation: u64,
) {
    let id = session.identity().key();
    let hub = session.hub().clone();
    let reason = loop {
        // The token that let the device in, or the one that renewed it.
        let expiry = claims
            .device(&id)
            .map_or(session.expires(), |d| d.expires)
            .map(|se| {
                tokio::time::Instant::now() + ironhub_auth::time_left(se, ironhub_auth::unix_now())
            });
        let lapse = async {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = session.next_message() => match message {
                Some(BusMessage::TakenOver) => break Some(error(
                    LinkError::Stolen,
                    "Another connection of the device took over.",
                )),
                Some(BusMessage::Revoked) => {
                    // Disabled, deleted or its credentials changed: a new link logs in again.
                    claims.forget_device(&id);
                    break Some(error(
                        AmqpError::UnauthorizedAccess,
                        "The device's access was revoked.",
                    ));
                }
                None => break Some(error(
                    AmqpError::UnauthorizedAccess,
                    "The device's session ended.",
                )),
                Some(message) => deliver(&hub, &state, message).await,
            },
            _ = done.changed() => break None,
            () = lapse => {
                if claims.device(&id).is_none() && session.expires().is_some() {
                    break Some(lapsed());
                }
            }
        }
    };
    if let Some(reason) = reason {
        tracing::debug!(device = %id, reason = ?reason.description, "closing the device's AMQP links");
        let _ = stop.send(Some(reason));
        devices.forget(&id, generation);
    }
    session.close().await;
}

/// Hands a bus message to the link that carries it.
async fn deliver(hub: &Hub, state: &DeviceState, message: BusMessage) {
    match message {
        BusMessage::C2dAvailable => state.c2d.notify_one(),
        BusMessage::DesiredPatch { version, body } => {
            if state.desired.load(Ordering::Relaxed) {
                let out = state.twin_out.lock().ok().and_then(|o| o.clone());
                if let Some(out) = out {
                    let _ = out.send(desired_patch(version, body)).await;
                }
            }
        }
        BusMessage::Method(call) => {
            let MethodCall {
                call_id,
                name,
                payload,
            } = *call;
            let out = state.methods_out.lock().ok().and_then(|o| o.clone());
            let sent = match out {
                Some(out) => {
                    if let Ok(mut pending) = state.pending_methods.lock() {
                        pending.insert(call_id);
                    }
                    out.send(method_request(call_id, &name, payload))
                        .await
                        .is_ok()
                }
                None => false,
            };
            if !sent {
                hub.bus()
                    .complete_method(call_id, Err(BusError::NotSubscribed));
            }
        }
        BusMessage::InputsAvailable => state.inputs.notify_one(),
        BusMessage::TakenOver | BusMessage::Revoked => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use ironhub_hub::AuthMethod;

    use super::*;
    use crate::testing::hub;

    fn device() -> AuthenticatedDevice {
        AuthenticatedDevice {
            identity: DeviceIdentity {
                device_id: "d1".into(),
                module_id: None,
                generation_id: "gen-1".into(),
                auth: AuthMethod::Sas,
                model_id: None,
            },
            expires: None,
        }
    }

    /// Why the device's links were told to close, if they were within `secs`.
    async fn stopped_within(link: &DeviceLink, secs: u64) -> Option<Error> {
        let mut stop = link.stop.clone();
        tokio::time::timeout(Duration::from_secs(secs), DeviceLink::stopped(&mut stop))
            .await
            .ok()
    }

    /// Waits (bounded) until the bus shows `d1` as `connected`.
    async fn until_connected(hub: &Hub, connected: bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while hub.bus().is_connected("d1").await != connected {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn links_of_a_device_share_one_session_that_ends_with_the_last() {
        let (hub, _dir) = hub().await;
        let devices = Devices::default();
        let claims = Claims::default();
        let (a, b) = tokio::join!(
            devices.join(&hub, &claims, device()),
            devices.join(&hub, &claims, device())
        );
        assert!(Arc::ptr_eq(&a.state, &b.state));
        assert!(hub.bus().is_connected("d1").await);
        a.leave();
        assert!(b.stop.borrow().is_none(), "not taken over by its sibling");
        assert!(hub.bus().is_connected("d1").await);
        b.leave();
        until_connected(&hub, false).await;
    }

    #[tokio::test]
    async fn another_connection_takes_the_device_over_and_its_links_are_told() {
        let (hub, _dir) = hub().await;
        let devices = Devices::default();
        let link = devices.join(&hub, &Claims::default(), device()).await;
        let other = hub.connect_device(device()).await;
        let reason = stopped_within(&link, 5).await.unwrap();
        assert_eq!(
            reason.condition,
            fe2o3_amqp::types::definitions::ErrorCondition::from(LinkError::Stolen)
        );
        // A link joining now opens a new session (taking over in turn).
        link.leave();
        let again = devices.join(&hub, &Claims::default(), device()).await;
        assert!(again.stop.borrow().is_none());
        other.close().await;
        assert!(hub.bus().is_connected("d1").await);
    }

    #[tokio::test]
    async fn a_revoked_device_s_links_are_closed_and_its_login_forgotten() {
        let (hub, _dir) = hub().await;
        let devices = Devices::default();
        let claims = Claims::default();
        claims.put_device(device());
        let link = devices.join(&hub, &claims, device()).await;
        hub.bus().send("d1", BusMessage::Revoked).await.unwrap();
        let reason = stopped_within(&link, 5).await.unwrap();
        assert_eq!(
            reason.condition,
            fe2o3_amqp::types::definitions::ErrorCondition::from(AmqpError::UnauthorizedAccess)
        );
        assert!(claims.device("d1").is_none());
        link.leave();
        until_connected(&hub, false).await;
    }

    #[tokio::test]
    async fn a_method_call_without_a_methods_link_is_not_subscribed() {
        let (hub, _dir) = hub().await;
        let devices = Devices::default();
        let _link = devices.join(&hub, &Claims::default(), device()).await;
        let call = hub
            .bus()
            .call_method("d1", "reboot", b"{}".to_vec(), Duration::from_secs(5))
            .await;
        assert_eq!(call, Err(BusError::NotSubscribed));
    }

    #[tokio::test]
    async fn a_lapsed_token_closes_the_links_unless_renewed() {
        let (hub, _dir) = hub().await;
        let devices = Devices::default();
        let claims = Claims::default();
        let now = ironhub_auth::unix_now();
        let mut short = device();
        short.expires = Some(now + 1);
        claims.put_device(short.clone());
        let link = devices.join(&hub, &claims, short).await;
        let reason = stopped_within(&link, 5).await.unwrap();
        assert_eq!(
            reason.condition,
            fe2o3_amqp::types::definitions::ErrorCondition::from(AmqpError::UnauthorizedAccess)
        );
        link.leave();

        let mut renewed = device();
        renewed.expires = Some(now + 1);
        claims.put_device(renewed.clone());
        let link = devices.join(&hub, &claims, renewed).await;
        let mut later = device();
        later.expires = Some(now + 3600);
        claims.put_device(later);
        let waited = stopped_within(&link, 3).await;
        assert!(waited.is_none(), "closed despite the renewal: {waited:?}");
    }
}
