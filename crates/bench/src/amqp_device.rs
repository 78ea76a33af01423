//! One benchmark device over AMQP, connected as the Node device SDK connects one
//! (`azure-iot-device-amqp`): AMQP over TLS, SASL ANONYMOUS, a CBS `put-token` of its SAS token
//! for `{host}/devices/{id}`, then a sender link on `/devices/{id}/messages/events`; and a
//! burst of telemetry with a bounded number of unsettled transfers, each done when the hub
//! accepts it (once it is durable, as a PUBACK is).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, bail};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, Message, Outcome, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use ironhub_auth::{sas, unix_now};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::device::device_id;
use crate::net::{HOST, Tls, tls_connect};

/// How long a CBS `put-token` may take to be answered.
const PUT_TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// An open AMQP connection with one session and its `$cbs` links.
pub(crate) struct AmqpClient {
    connection: ConnectionHandle<()>,
    pub session: SessionHandle<()>,
    cbs: (Sender, Receiver),
}

impl AmqpClient {
    /// A new TLS connection to loopback `port`, AMQP opened on it (container `id`, SASL
    /// ANONYMOUS), a session begun and `$cbs`'s link pair attached.
    pub async fn open(
        config: Arc<rustls::ClientConfig>,
        port: u16,
        id: &str,
    ) -> anyhow::Result<Self> {
        let tls = Io(tls_connect(config, port).await?);
        let mut connection = Connection::builder()
            .container_id(id)
            .hostname(HOST)
            .sasl_profile(SaslProfile::Anonymous)
            .open_with_stream(tls)
            .await
            .with_context(|| format!("{id}: AMQP open"))?;
        let mut session = Session::begin(&mut connection).await?;
        let requests = Sender::attach(&mut session, format!("{id}-cbs-sender"), "$cbs").await?;
        let answers = Receiver::attach(&mut session, format!("{id}-cbs-receiver"), "$cbs").await?;
        Ok(Self {
            connection,
            session,
            cbs: (requests, answers),
        })
    }

    /// Puts the SAS `token` for `audience` on `$cbs` and waits for its `200`.
    pub async fn put_token(&mut self, audience: &str, token: String) -> anyhow::Result<()> {
        let (requests, answers) = &mut self.cbs;
        let mut application = ApplicationProperties::default();
        for (name, value) in [
            ("operation", "put-token"),
            ("type", "servicebus.windows.net:sastoken"),
            ("name", audience),
        ] {
            application.insert(name.into(), SimpleValue::String(value.into()));
        }
        let request = Message::builder()
            .properties(Properties::builder().message_id(1u64).build())
            .application_properties(application)
            .value(Value::String(token))
            .build();
        requests.send(request).await?;
        let answer = tokio::time::timeout(PUT_TOKEN_TIMEOUT, answers.recv::<Body<Value>>())
            .await
            .with_context(|| format!("the put-token for {audience} was not answered"))??;
        answers.accept(&answer).await?;
        let status = answer
            .message()
            .application_properties
            .as_ref()
            .and_then(|p| p.get("status-code").cloned());
        match status {
            Some(SimpleValue::Int(200)) => Ok(()),
            other => bail!("the put-token for {audience} was answered {other:?}"),
        }
    }

    /// Closes the connection (the server sees a clean close, as at a client's end).
    pub async fn close(mut self) {
        let _ = self.cbs.0.close().await;
        let _ = self.cbs.1.close().await;
        let _ = self.session.end().await;
        let _ = self.connection.close().await;
    }
}

/// A device logged in over AMQP with its telemetry link attached.
pub(crate) struct AmqpDevice {
    client: AmqpClient,
    events: Sender,
}

/// Device `i` (key `key`, a SAS token of it for `{host}/devices/{id}`) connected to the
/// AMQP port `port`.
pub(crate) async fn connect(
    config: Arc<rustls::ClientConfig>,
    port: u16,
    i: usize,
    key: &str,
) -> anyhow::Result<AmqpDevice> {
    let id = device_id(i);
    let mut client = AmqpClient::open(config, port, &id).await?;
    let audience = format!("{HOST}/devices/{id}");
    let token = sas::generate(&audience, key, unix_now() + 3600, None)?;
    client.put_token(&audience, token).await?;
    let events = Sender::attach(
        &mut client.session,
        format!("{id}-events"),
        format!("amqps://{HOST}/devices/{id}/messages/events"),
    )
    .await
    .with_context(|| format!("{id}: attaching the telemetry link"))?;
    Ok(AmqpDevice { client, events })
}

impl AmqpDevice {
    /// Sends `messages` messages of `payload` with at most `inflight` not yet settled by the
    /// hub; fails on the first one the hub does not accept.
    pub async fn send_all(
        &mut self,
        messages: usize,
        inflight: usize,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let mut unsettled = VecDeque::with_capacity(inflight.max(1));
        for n in 0..messages {
            if unsettled.len() >= inflight.max(1) {
                settled(unsettled.pop_front()).await?;
            }
            let message = Message::builder()
                .properties(Properties::builder().message_id(n as u64).build())
                .data(Binary::from(payload.to_vec()))
                .build();
            let message: Message<Data> = message;
            unsettled.push_back(self.events.send_batchable(message).await?);
        }
        while let Some(delivery) = unsettled.pop_front() {
            settled(Some(delivery)).await?;
        }
        Ok(())
    }

    /// Detaches the telemetry link and closes the connection.
    pub async fn close(self) {
        let _ = self.events.close().await;
        self.client.close().await;
    }
}

/// Waits for a transfer's outcome: `Ok` when the hub accepted it.
async fn settled<F>(delivery: Option<F>) -> anyhow::Result<()>
where
    F: Future<Output = Result<Outcome, fe2o3_amqp::link::SendError>>,
{
    let Some(delivery) = delivery else {
        return Ok(());
    };
    match delivery.await? {
        Outcome::Accepted(_) => Ok(()),
        other => bail!("a telemetry message was not accepted: {other:?}"),
    }
}

/// A TLS stream as fe2o3-amqp takes one (it asks its transport to be `Debug`).
struct Io(Tls);

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Io(TLS)")
    }
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
