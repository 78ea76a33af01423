//! One AMQP connection: SASL, then its sessions, then each link by the node it names. The
//! request/response nodes answer on the client's link from the same node (`$cbs`,
//! `$management`, and a device's DPS registration); a partition link delivers events; any
//! other address is closed with `amqp:not-found`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SessionAcceptor,
    SupportedReceiverSettleModes,
};
use fe2o3_amqp::types::definitions::{AmqpError, Error, LinkError, ReceiverSettleMode, Role};
use fe2o3_amqp::types::messaging::{
    AmqpValue, FilterSet, Message, SerializableBody, TargetArchetype,
};
use fe2o3_amqp::types::primitives::{OrderedMap, Symbol, Value};
use fe2o3_amqp::{Receiver, Sender};
use ironhub_auth::Credentials;
use ironhub_hub::DeviceLogin;
use ironhub_hub::network::{self, NetworkEndpoint, Peer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::AmqpContext;
use crate::address::{Node, node};
use crate::c2d;
use crate::claims::Claims;
use crate::device::{DeviceLink, Devices};
use crate::device_links;
use crate::errors::{error, hub_error, not_found, unauthorized};
use crate::eventhub::{deliver, start_position, stolen};
use crate::frame_check::FrameCheck;
use crate::links::next_delivery;
use crate::padding::Padded;
use crate::provisioning::{self, Registration};
use crate::replay::{Replay, SASL_PROTOCOL, read_header};
use crate::requests::{self, Reply};
use crate::sasl::{HubSasl, PlainLogin, RegistrationLogin};
use crate::service_bound::{self, Queue};

/// How long a client may take to send its protocol header once TLS is up.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a client may take from its protocol header to an open connection.
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

type Response = Message<AmqpValue<Value>>;

/// A link answers go out on: its node, the client's address of the link, its queue.
type Route<M> = (Node, String, mpsc::Sender<M>);

/// How long a request waits for the link its answer goes out on. A client may send its
/// request as soon as its sending link is attached, before the server has attached the
/// receiving one: uamqp attaches `$cbs`'s sender first and puts its token at once.
const ROUTE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The links answers (of type `M`) go out on.
#[derive(Debug, Clone)]
struct Routes<M> {
    links: Arc<Mutex<Vec<Route<M>>>>,
    /// Woken each time a link is added.
    added: Arc<tokio::sync::Notify>,
}

impl<M> Default for Routes<M> {
    fn default() -> Self {
        Routes {
            links: Arc::default(),
            added: Arc::default(),
        }
    }
}

impl<M> Routes<M> {
    fn add(&self, node: Node, address: String, link: mpsc::Sender<M>) {
        if let Ok(mut links) = self.links.lock() {
            links.retain(|(_, _, l)| !l.is_closed());
            links.push((node, address, link));
        }
        self.added.notify_waiters();
    }

    /// [`Routes::find`], waiting up to [`ROUTE_WAIT`] for the link to be attached, or until
    /// the connection closes.
    async fn wait_for(
        &self,
        node: &Node,
        reply_to: Option<&str>,
        closed: &mut watch::Receiver<bool>,
    ) -> Option<mpsc::Sender<M>> {
        let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
        loop {
            // Registered before the look, so an `add` between the two is not missed.
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if let Some(link) = self.find(node, reply_to) {
                return Some(link);
            }
            tokio::select! {
                () = &mut added => {}
                () = tokio::time::sleep_until(deadline) => return None,
                _ = closed.changed() => return None,
            }
        }
    }

    /// The link of `node` whose address is `reply_to`, else the latest link of `node`.
    fn find(&self, node: &Node, reply_to: Option<&str>) -> Option<mpsc::Sender<M>> {
        let links = self.links.lock().ok()?;
        let open = || {
            links
                .iter()
                .rev()
                .filter(|(n, _, l)| n == node && !l.is_closed())
        };
        open()
            .find(|(_, a, _)| Some(a.as_str()) == reply_to)
            .or_else(|| open().next())
            .map(|(_, _, l)| l.clone())
    }
}

/// What the links of one connection share.
#[derive(Debug, Clone)]
struct Shared {
    ctx: AmqpContext,
    peer: SocketAddr,
    claims: Claims,
    routes: Routes<Response>,
    /// The links DPS's answers go out on.
    registrations: Routes<provisioning::Answer>,
    /// The connection's DPS login (SASL PLAIN), when it made one.
    registration_login: Option<Arc<RegistrationLogin>>,
    closed: watch::Receiver<bool>,
    /// The TLS client certificate chain (DER, leaf first); empty when none was sent.
    certificates: Arc<Vec<Vec<u8>>>,
    devices: Devices,
}

/// Serves one connection until the client closes it or it fails.
pub async fn serve<Io>(stream: Io, peer: SocketAddr, certificates: Vec<Vec<u8>>, ctx: AmqpContext)
where
    Io: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let mut stream = stream;
    let header = match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await {
        Ok(Ok(header)) => header,
        _ => {
            tracing::debug!(%peer, "AMQP connection closed before its protocol header");
            return;
        }
    };
    let io = Padded::new(FrameCheck::new(
        Replay::new(&header, stream),
        peer,
        ctx.hub.frame_limits().amqp_message_bytes,
    ));
    let login = Arc::new(Mutex::new(None));
    // fe2o3-amqp advertises the threshold it enforces; the padding writer advertises half of
    // it, as the spec recommends (AMQP 1.0 part 2, 2.4.5) and IoT Hub's clients expect.
    let idle_ms = u32::try_from(ctx.idle_timeout.as_millis().saturating_mul(2)).unwrap_or(u32::MAX);
    let accept = async {
        if header[4] == SASL_PROTOCOL {
            ConnectionAcceptor::builder()
                .container_id(ctx.hub.host_name())
                .idle_time_out(idle_ms)
                .sasl_acceptor(HubSasl::new(
                    ctx.hub.clone(),
                    ctx.dps.clone(),
                    login.clone(),
                ))
                .build()
                .accept(io)
                .await
        } else {
            // No SASL: the client authenticates with claims-based security only.
            ConnectionAcceptor::builder()
                .container_id(ctx.hub.host_name())
                .idle_time_out(idle_ms)
                .build()
                .accept(io)
                .await
        }
    };
    // A client that never completes the SASL exchange and the open (or sends frames that do
    // not decode, which fe2o3-amqp waits past) is disconnected, as a slow TLS handshake is.
    let Ok(accepted) = tokio::time::timeout(OPEN_TIMEOUT, accept).await else {
        tracing::debug!(%peer, "AMQP connection closed: no open within the time allowed");
        return;
    };
    let mut connection = match accepted {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "AMQP connection refused");
            return;
        }
    };
    let claims = Claims::default();
    // A PLAIN login is proven (or the connection closed) before any session is served; a
    // DPS login is attested with each of its requests.
    let login = login.lock().ok().and_then(|mut l| l.take());
    let registration_login = match &login {
        Some(PlainLogin::Registration(r)) if ctx.dps.is_some() => Some(Arc::new(r.clone())),
        Some(PlainLogin::Registration(r)) => {
            let _ = connection.close_with_error(unauthorized(&r.scope)).await;
            return;
        }
        _ => None,
    };
    if let Some(login) = login
        && let Err(e) = login.verify(&ctx.hub, &claims).await
    {
        let _ = connection.close_with_error(e).await;
        return;
    }
    let (closing, closed) = watch::channel(false);
    let shared = Shared {
        ctx,
        peer,
        claims,
        routes: Routes::default(),
        registrations: Routes::default(),
        registration_login,
        closed,
        certificates: Arc::new(certificates),
        devices: Devices::default(),
    };
    let sessions = SessionAcceptor::new();
    let mut tasks = JoinSet::new();
    // Counted open until closed; a drain of the node closes the connection (every message
    // received so far was settled when it was stored).
    let drain = shared.ctx.hub.drain().clone();
    let _open = drain.track();
    let refused = network::refused(
        shared.ctx.hub.clone(),
        shared.network_peer(),
        AmqpContext::ENDPOINTS,
    );
    tokio::pin!(refused);
    loop {
        tokio::select! {
            session = sessions.accept(&mut connection) => match session {
                Ok(session) => {
                    // Its links are this connection's caller's (a task-local).
                    let caller = ironhub_observe::caller::current();
                    let served = serve_session(session, shared.clone());
                    tasks.spawn(ironhub_observe::caller::within(caller, served));
                }
                Err(_) => break,
            },
            () = drain.begun() => {
                tracing::debug!(%peer, "AMQP connection closed: the server is draining");
                break;
            }
            () = &mut refused => break,
        }
    }
    let _ = closing.send(true);
    shared.devices.close_all();
    let _ = connection.close().await;
    tasks.abort_all();
    tracing::debug!(%peer, "AMQP connection closed");
}

async fn serve_session(mut session: ListenerSessionHandle, shared: Shared) {
    // IoT Hub settles what it receives at once (rcv-settle-mode first), whatever the sender
    // asks: uamqp, for one, completes a send only on a settled disposition.
    let links = LinkAcceptor::builder()
        // The largest message a client may send (IoT Hub's 256 KiB with room for the AMQP
        // framing by default): `serve --max-amqp-message-bytes`.
        .max_message_size(shared.ctx.hub.frame_limits().amqp_message_bytes)
        .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
        .fallback_receiver_settle_mode(ReceiverSettleMode::First)
        .build();
    let mut tasks = JoinSet::new();
    while let Some(attach) = session.next_incoming_attach().await {
        let epoch = crate::eventhub::epoch(attach.properties.as_ref());
        let api_version = provisioning::api_version(attach.properties.as_ref());
        let (role, address, filters) = match attach.role {
            // The client sends: it names the target.
            Role::Sender => {
                let address = match attach.target.as_deref() {
                    Some(TargetArchetype::Target(t)) => t.address.clone(),
                    _ => None,
                };
                (Role::Sender, address, None)
            }
            Role::Receiver => {
                let source = attach.source.as_deref();
                (
                    Role::Receiver,
                    source.and_then(|s| s.address.clone()),
                    source.and_then(|s| s.filter.clone()),
                )
            }
        };
        let address = address.unwrap_or_default();
        let link = match links.accept_incoming_attach(attach, &mut session).await {
            Ok(link) => link,
            Err(e) => {
                tracing::debug!(peer = %shared.peer, address, error = %e, "AMQP attach failed");
                continue;
            }
        };
        // The network rules of the link's endpoint (the connection passed the port's).
        if let Some(endpoint) = endpoint_of(&node(&address, &shared.ctx.entity))
            && !shared
                .ctx
                .hub
                .network_admits(&shared.network_peer(), endpoint)
                .await
        {
            tracing::info!(peer = %shared.peer, address, "AMQP link refused by the network rules");
            let refusal = error(AmqpError::UnauthorizedAccess, "Unauthorized".to_owned());
            let _ = match link {
                LinkEndpoint::Receiver(r) => r.close_with_error(refusal).await.map_err(|_| ()),
                LinkEndpoint::Sender(s) => s.close_with_error(refusal).await.map_err(|_| ()),
            };
            continue;
        }
        let shared = shared.clone();
        let caller = ironhub_observe::caller::current();
        match (role, link) {
            (_, LinkEndpoint::Receiver(receiver)) => {
                let link = incoming(receiver, address, api_version, shared);
                tasks.spawn(ironhub_observe::caller::within(caller, link));
            }
            (_, LinkEndpoint::Sender(sender)) => {
                let link = outgoing(sender, address, Reading { filters, epoch }, shared);
                tasks.spawn(ironhub_observe::caller::within(caller, link));
            }
        }
    }
    tasks.abort_all();
    let _ = session.end().await;
}

/// The endpoint a link's node belongs to, for the network rules; `None` for `$cbs` (and
/// nodes that answer for themselves), which every client needs.
fn endpoint_of(node: &Node) -> Option<NetworkEndpoint> {
    match node {
        Node::Partition { .. } | Node::Events | Node::Management => {
            Some(NetworkEndpoint::HubEventHub)
        }
        Node::DeviceBound | Node::Feedback | Node::FileNotifications => {
            Some(NetworkEndpoint::HubService)
        }
        Node::Device { .. } => Some(NetworkEndpoint::HubDevice),
        Node::Registration { .. } => Some(NetworkEndpoint::DpsDevice),
        Node::Cbs | Node::Unknown => None,
    }
}

impl Shared {
    /// The client as the network rules see it.
    fn network_peer(&self) -> Peer {
        Peer {
            ip: self.peer.ip(),
            private_endpoint: self.ctx.private_endpoint,
        }
    }
}

/// A link the client sends on: requests to `$cbs`, `$management` or DPS, C2D sends, a
/// device's messages.
async fn incoming(
    mut receiver: Receiver,
    address: String,
    api_version: Option<String>,
    shared: Shared,
) {
    let node = node(&address, &shared.ctx.entity);
    match node {
        Node::Registration { .. } => {
            registration_requests(receiver, node, address, api_version, shared).await;
            return;
        }
        Node::Cbs | Node::Management => {}
        Node::DeviceBound => {
            if !shared
                .claims
                .allows(&shared.ctx.hub, "/messages/devicebound")
            {
                let _ = receiver.close_with_error(unauthorized(&address)).await;
                return;
            }
            let hub = shared.ctx.hub.clone();
            let claims = shared.claims.clone();
            c2d::accept_sends(receiver, hub.clone(), shared.closed.clone(), move || {
                claims.allows(&hub, "/messages/devicebound")
            })
            .await;
            return;
        }
        Node::Device {
            device_id,
            module_id,
            link,
        } => {
            match device_link(&shared, &device_id, module_id.as_deref(), &address).await {
                Ok(device) => {
                    let hub = shared.ctx.hub.clone();
                    device_links::incoming(receiver, link, hub, device, shared.closed.clone())
                        .await;
                }
                Err(e) => {
                    let _ = receiver.close_with_error(e).await;
                }
            }
            return;
        }
        _ => {
            let _ = receiver.close_with_error(not_found(&address)).await;
            return;
        }
    }
    let mut closed = shared.closed.clone();
    while let Some(delivery) = next_delivery(&mut receiver, &mut closed).await {
        let _ = receiver.accept(&delivery).await;
        let request = delivery.message();
        let reply: Reply = match node {
            Node::Cbs => requests::cbs(&shared.ctx, &shared.claims, request).await,
            _ => requests::management(&shared.ctx, &shared.claims, request).await,
        };
        let reply_to = request.properties.as_ref().and_then(|p| p.reply_to.clone());
        let response = reply.into_message(request);
        match shared
            .routes
            .wait_for(&node, reply_to.as_deref(), &mut closed)
            .await
        {
            Some(link) => {
                let _ = link.send(response).await;
            }
            None => tracing::info!(
                peer = %shared.peer,
                address,
                "an AMQP request's answer dropped: no link to answer on was attached"
            ),
        }
    }
}

/// How a partition receiver asked to read: its source's filters and its link's epoch.
struct Reading {
    filters: Option<FilterSet>,
    epoch: Option<i64>,
}

/// A link the client receives on: the answers of a request node, or a partition's events.
async fn outgoing(sender: Sender, address: String, reading: Reading, shared: Shared) {
    match node(&address, &shared.ctx.entity) {
        node @ (Node::Cbs | Node::Management) => {
            let client_address = match sender.target().as_ref() {
                Some(t) => t.address.clone().unwrap_or_default(),
                None => String::new(),
            };
            let (tx, rx) = mpsc::channel(16);
            shared.routes.add(node, client_address, tx);
            answer(sender, rx, shared.closed.clone()).await;
        }
        Node::Partition {
            stream,
            group,
            partition,
        } => {
            let target = Partition {
                stream: stream.as_deref(),
                group: &group,
                partition: &partition,
            };
            partition_link(sender, &address, target, reading, shared).await;
        }
        Node::Events => {
            let _ = sender.close_with_error(redirect(&shared.ctx)).await;
        }
        node @ (Node::Feedback | Node::FileNotifications) => {
            let queue = if node == Node::Feedback {
                Queue::Feedback
            } else {
                Queue::FileNotifications
            };
            if !shared.claims.allows(&shared.ctx.hub, queue.path()) {
                let _ = sender.close_with_error(unauthorized(&address)).await;
                return;
            }
            let hub = shared.ctx.hub.clone();
            let claims = shared.claims.clone();
            service_bound::send(
                sender,
                queue,
                hub.clone(),
                shared.closed.clone(),
                move || claims.allows(&hub, queue.path()),
            )
            .await;
        }
        Node::Device {
            device_id,
            module_id,
            link,
        } => match device_link(&shared, &device_id, module_id.as_deref(), &address).await {
            Ok(device) => {
                let hub = shared.ctx.hub.clone();
                device_links::outgoing(sender, link, hub, device, shared.closed.clone()).await;
            }
            Err(e) => {
                let _ = sender.close_with_error(e).await;
            }
        },
        Node::Registration {
            scope,
            registration_id,
        } => {
            if let Err(e) = registration(&shared, &scope, &registration_id, &address) {
                let _ = sender.close_with_error(e).await;
                return;
            }
            let (tx, rx) = mpsc::channel(16);
            let node = Node::Registration {
                scope,
                registration_id,
            };
            shared.registrations.add(node, String::new(), tx);
            answer(sender, rx, shared.closed.clone()).await;
        }
        Node::DeviceBound | Node::Unknown => {
            let _ = sender.close_with_error(not_found(&address)).await;
        }
    }
}

/// A device's link to DPS: each request answered by the domain, the answer sent on the
/// device's link from the same node (the request accepted), or the request rejected.
async fn registration_requests(
    mut receiver: Receiver,
    node: Node,
    address: String,
    api_version: Option<String>,
    shared: Shared,
) {
    let Node::Registration {
        scope,
        registration_id,
    } = &node
    else {
        return;
    };
    let device = match registration(&shared, scope, registration_id, &address) {
        Ok(device) => Registration {
            api_version: api_version.as_deref(),
            ..device
        },
        Err(e) => {
            let _ = receiver.close_with_error(e).await;
            return;
        }
    };
    let mut closed = shared.closed.clone();
    while let Some(delivery) = next_delivery(&mut receiver, &mut closed).await {
        let answer = match device.answer(delivery.message()).await {
            Ok(answer) => answer,
            Err(refusal) => {
                let _ = receiver.reject(&delivery, refusal).await;
                continue;
            }
        };
        let _ = receiver.accept(&delivery).await;
        match shared
            .registrations
            .wait_for(&node, None, &mut closed)
            .await
        {
            Some(link) => {
                let _ = link.send(answer).await;
            }
            None => tracing::info!(
                peer = %shared.peer,
                address,
                "a DPS answer dropped: the device attached no link to receive it"
            ),
        }
    }
}

/// The registration a link on `{scope}/registrations/{registration_id}` serves, with the
/// connection's credentials: when DPS is served here, and the connection's DPS login (if it
/// made one) is for that registration.
fn registration<'a>(
    shared: &'a Shared,
    scope: &'a str,
    registration_id: &'a str,
    address: &str,
) -> Result<Registration<'a>, Error> {
    let Some(dps) = shared.ctx.dps.as_ref() else {
        return Err(not_found(address));
    };
    let token = match shared.registration_login.as_deref() {
        Some(login)
            if login.scope.eq_ignore_ascii_case(scope)
                && login.registration_id.eq_ignore_ascii_case(registration_id) =>
        {
            Some(login.token.as_str())
        }
        Some(_) => return Err(unauthorized(address)),
        None => None,
    };
    Ok(Registration {
        dps,
        scope,
        registration_id,
        token,
        certificates: &shared.certificates,
        api_version: None,
    })
}

/// The device (or module) a link on `/devices/{device_id}[/modules/{module_id}]/…` belongs
/// to, once the connection proved it: by a token put on `$cbs` (or the PLAIN login), else by
/// the TLS client certificate, checked by the domain when the first link attaches. Another
/// identity's address is refused.
async fn device_link(
    shared: &Shared,
    device_id: &str,
    module_id: Option<&str>,
    address: &str,
) -> Result<DeviceLink, Error> {
    let hub = &shared.ctx.hub;
    let key = module_id.map_or_else(|| device_id.to_owned(), |m| format!("{device_id}/{m}"));
    let device = match shared.claims.device(&key) {
        Some(device) => device,
        None if !shared.certificates.is_empty() => {
            let login = DeviceLogin {
                device_id,
                module_id,
                credentials: Credentials::new(None, &shared.certificates),
                ..DeviceLogin::default()
            };
            let device = hub.authenticate(&login).await.map_err(|e| {
                tracing::info!(peer = %shared.peer, device = device_id, error = %e, "AMQP device refused");
                hub_error(&e)
            })?;
            shared.claims.put_device(device.clone());
            device
        }
        None => return Err(unauthorized(address)),
    };
    Ok(shared.devices.join(hub, &shared.claims, device).await)
}

/// Sends the answers queued for a request node's link.
async fn answer<T: SerializableBody + Send>(
    mut sender: Sender,
    mut rx: mpsc::Receiver<Message<T>>,
    mut closed: watch::Receiver<bool>,
) {
    loop {
        // A sender's link only ever reads the client's detach, so waiting for it here loses
        // nothing; dropping the link then answers it.
        let response = tokio::select! {
            r = rx.recv() => r,
            _ = sender.on_detach() => None,
            _ = closed.changed() => None,
        };
        let Some(response) = response else {
            return;
        };
        if sender.send_batchable(response).await.is_err() {
            return;
        }
    }
}

/// `amqp:link:redirect` to the Event Hubs-compatible entity, as IoT Hub answers a receiver
/// on `/messages/events`.
fn redirect(ctx: &AmqpContext) -> Error {
    let host = ctx.hub.host_name().to_owned();
    let mut info = OrderedMap::new();
    info.insert(Symbol::from("hostname"), Value::String(host.clone()));
    info.insert(Symbol::from("network-host"), Value::String(host.clone()));
    info.insert(Symbol::from("port"), Value::Int(i32::from(ctx.port)));
    info.insert(
        Symbol::from("address"),
        Value::String(format!("amqps://{host}:{}/{}", ctx.port, ctx.entity)),
    );
    Error::new(
        LinkError::Redirect,
        Some("Use the Event Hubs-compatible endpoint.".to_owned()),
        Some(info),
    )
}

/// What a partition link reads: the hub's entity or a custom event stream (`stream`).
struct Partition<'a> {
    stream: Option<&'a str>,
    group: &'a str,
    partition: &'a str,
}

/// A receiver on `{entity}/ConsumerGroups/{group}/Partitions/{partition}`: authorized by the
/// connection's claims, positioned by its filter, placed by its epoch (refused with
/// `amqp:link:stolen` when another receiver's epoch wins), then fed until it or its token goes
/// away, or a receiver with a higher epoch takes the partition.
async fn partition_link(
    sender: Sender,
    address: &str,
    target: Partition<'_>,
    how: Reading,
    shared: Shared,
) {
    let ctx = &shared.ctx;
    let Partition {
        stream,
        group,
        partition,
    } = target;
    let entity = stream.unwrap_or(&ctx.entity);
    let path = format!("/{entity}/ConsumerGroups/{group}/Partitions/{partition}");
    let reading = match ctx.hub.for_endpoint(stream).await {
        Ok(hub) => hub,
        Err(_) => {
            let _ = sender.close_with_error(not_found(address)).await;
            return;
        }
    };
    if !shared.claims.allows(&ctx.hub, &path) {
        let _ = sender.close_with_error(unauthorized(address)).await;
        return;
    }
    let Ok(partition) = partition.parse::<u32>() else {
        let _ = sender.close_with_error(not_found(address)).await;
        return;
    };
    let from = match start_position(how.filters.as_ref()) {
        Ok(from) => from,
        Err(description) => {
            let _ = sender
                .close_with_error(error(AmqpError::NotImplemented, description))
                .await;
            return;
        }
    };
    let reader = match reading
        .open_reader(group, from, Some(partition), None)
        .await
    {
        Ok(reader) => reader,
        Err(e) => {
            let _ = sender.close_with_error(hub_error(&e)).await;
            return;
        }
    };
    let hold = match ctx
        .hub
        .hold_partition(entity, group, partition, how.epoch)
        .await
    {
        Ok(Ok(hold)) => hold,
        Ok(Err(refused)) => {
            tracing::debug!(peer = %shared.peer, address, %refused, "AMQP receiver refused");
            let _ = sender.close_with_error(stolen(&refused)).await;
            return;
        }
        Err(e) => {
            let _ = sender.close_with_error(hub_error(&e)).await;
            return;
        }
    };
    let hub = ctx.hub.clone();
    let claims = shared.claims.clone();
    deliver(sender, reader, hold, shared.closed.clone(), move || {
        claims.allows(&hub, &path)
    })
    .await;
}

/// A `$cbs` request sent before the client's receiving link is attached is still answered
/// once that link attaches. uamqp (the Python service SDK's AMQP) attaches `$cbs`'s sending
/// link first and puts its token at once; when the answer was dropped, its put-token timed
/// out after 10 s.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Message, Properties};
    use fe2o3_amqp::types::primitives::{SimpleValue, Value};
    use fe2o3_amqp::{Connection, Receiver, Sender, Session};

    use crate::AmqpContext;
    use crate::testing::{HOST, hub};

    #[tokio::test]
    async fn a_put_token_sent_before_the_answer_link_is_attached_is_answered() {
        let (hub, _dir) = hub().await;
        let key = hub
            .settings()
            .policy("iothubowner")
            .unwrap()
            .primary_key
            .clone();
        let token = ironhub_auth::sas::generate(
            HOST,
            &key,
            ironhub_auth::unix_now() + 3600,
            Some("iothubowner"),
        )
        .unwrap();
        let ctx = AmqpContext::new(hub, 5671);
        let (client, server) = tokio::io::duplex(1 << 16);
        let peer = "127.0.0.1:1".parse().unwrap();
        tokio::spawn(super::serve(server, peer, Vec::new(), ctx));

        let mut connection = Connection::builder()
            .container_id("t")
            .hostname(HOST)
            .open_with_stream(client)
            .await
            .unwrap();
        let mut session = Session::begin(&mut connection).await.unwrap();
        let mut requests = Sender::attach(&mut session, "cbs-sender", "$cbs")
            .await
            .unwrap();
        let mut application = ApplicationProperties::default();
        for (name, value) in [
            ("operation", "put-token"),
            ("type", "servicebus.windows.net:sastoken"),
            ("name", HOST),
        ] {
            application.insert(name.into(), SimpleValue::String(value.into()));
        }
        let request = Message::builder()
            .properties(Properties::builder().message_id(1u64).build())
            .application_properties(application)
            .value(Value::String(token))
            .build();
        // Settled by the server before this client attached anything to answer on.
        requests.send(request).await.unwrap();

        let mut answers = Receiver::attach(&mut session, "cbs-receiver", "$cbs")
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), answers.recv::<Body<Value>>())
            .await
            .expect("the put-token was not answered")
            .unwrap();
        answers.accept(&answer).await.unwrap();
        let status = answer
            .message()
            .application_properties
            .as_ref()
            .and_then(|p| p.get("status-code").cloned());
        assert_eq!(status, Some(SimpleValue::Int(200)));
    }
}
