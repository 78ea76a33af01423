//! The NATS subject endpoint: each message is published to the endpoint's subject, the
//! payload exactly the message's bytes, its properties as NATS headers (`headers.rs`).
//!
//! Delivery is confirmed one of two ways, chosen per subject without configuration. The sink
//! asks JetStream whether a stream captures the subject (`$JS.API.STREAM.NAMES`, the answer
//! kept for 30 s). If one does, the message is published through JetStream with a
//! `Nats-Msg-Id` of the endpoint and its delivery id: the server's acknowledgement proves it
//! was stored, and a repeat after a lost acknowledgement is dropped by the stream's duplicate
//! window. If none does (or the server has no JetStream), the message is published on core
//! NATS and the connection flushed: the server has it, and core NATS promises nothing
//! further. While the client is not connected nothing is published (the client would buffer
//! it); the attempt fails and is retried. The subject's `{deviceId}` is expanded as
//! `subject.rs` says.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind as JsPublishErrorKind;
use async_nats::{Client, ConnectOptions, HeaderMap, RequestErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use ironhub_store::Event;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::headers::{delivery_id, message_headers};
use crate::settings::{DEFAULT_TIMEOUT_SECS, NatsSubjectSettings};
use crate::sink::{Accepted, BatchError, DeliveryError, Sink};
use crate::subject::render_subject;

/// How long the answer "does a stream capture this subject" is trusted.
const STREAM_LOOKUP_TTL: Duration = Duration::from_secs(30);
/// The most subjects whose answer is kept.
const STREAM_LOOKUP_MAX: usize = 10_000;

/// A [`Sink`] publishing each message to a NATS subject (see the module documentation).
#[derive(Debug)]
pub struct NatsSink {
    name: String,
    settings: NatsSubjectSettings,
    timeout: Duration,
    conn: OnceCell<Conn>,
    /// Per subject: whether a stream captures it, and since when that is known.
    streams: Mutex<HashMap<String, (bool, Instant)>>,
}

#[derive(Debug)]
struct Conn {
    client: Client,
    js: async_nats::jetstream::Context,
}

fn publish_failure(url: &str, e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::transient(format!("cannot publish to {url}: {e}"))
}

impl NatsSink {
    pub fn new(settings: &NatsSubjectSettings) -> NatsSink {
        NatsSink {
            name: settings.name.clone(),
            settings: settings.clone(),
            timeout: Duration::from_secs(u64::from(
                settings.timeout_in_seconds.unwrap_or(DEFAULT_TIMEOUT_SECS),
            )),
            conn: OnceCell::new(),
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// The connection, made on first use (a failure is retried at the next attempt); once
    /// made, the client reconnects by itself whenever it is lost.
    async fn conn(&self) -> Result<&Conn, DeliveryError> {
        self.conn
            .get_or_try_init(|| async {
                let s = &self.settings;
                let mut options = ConnectOptions::new()
                    .name(format!("ironhub endpoint {}", self.name))
                    .max_reconnects(None)
                    .connection_timeout(self.timeout)
                    .reconnect_delay_callback(|attempts| {
                        Duration::from_millis((attempts as u64 * 100).min(2_000))
                    });
                if let (Some(user), Some(password)) = (&s.user, &s.password) {
                    options = options.user_and_password(user.clone(), password.clone());
                }
                if let Some(token) = &s.token {
                    options = options.token(token.clone());
                }
                if let Some(ca) = &s.ca_file {
                    options = options.add_root_certificates(ca.clone()).require_tls(true);
                }
                if s.url.starts_with("tls://") {
                    options = options.require_tls(true);
                }
                let client = options.connect(s.url.as_str()).await.map_err(|e| {
                    DeliveryError::transient(format!("cannot connect to {}: {e}", s.url))
                })?;
                let mut js = async_nats::jetstream::new(client.clone());
                js.set_timeout(self.timeout);
                Ok(Conn { client, js })
            })
            .await
    }

    /// Whether a JetStream stream captures `subject`.
    async fn captured(&self, client: &Client, subject: &str) -> Result<bool, DeliveryError> {
        let lock = || {
            self.streams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((known, at)) = lock().get(subject)
            && at.elapsed() < STREAM_LOOKUP_TTL
        {
            return Ok(*known);
        }
        let question =
            serde_json::to_vec(&serde_json::json!({ "subject": subject })).unwrap_or_default();
        let answer = tokio::time::timeout(
            self.timeout,
            client.request("$JS.API.STREAM.NAMES", question.into()),
        )
        .await
        .map_err(|_| publish_failure(&self.settings.url, "JetStream lookup timed out"))?;
        let captured = match answer {
            Ok(message) => serde_json::from_slice::<serde_json::Value>(&message.payload)
                .ok()
                .and_then(|v| {
                    v.get("streams")
                        .and_then(|s| s.as_array())
                        .map(|s| !s.is_empty())
                })
                .unwrap_or(false),
            // No JetStream on this server.
            Err(e) if e.kind() == RequestErrorKind::NoResponders => false,
            Err(e) => return Err(publish_failure(&self.settings.url, e)),
        };
        let mut cache = lock();
        if cache.len() >= STREAM_LOOKUP_MAX {
            cache.clear();
        }
        cache.insert(subject.to_owned(), (captured, Instant::now()));
        Ok(captured)
    }

    fn headers(&self, event: &Event) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in message_headers(event) {
            headers.insert(k.as_str(), v.as_str());
        }
        headers
    }

    /// Publishes one message; `Ok(true)` when JetStream acknowledged it, `Ok(false)` when it
    /// went to core NATS and awaits a flush.
    async fn publish(&self, conn: &Conn, event: &Event) -> Result<bool, DeliveryError> {
        let url = &self.settings.url;
        let subject = render_subject(&self.settings.subject, &event.event.device_id);
        let headers = self.headers(event);
        let payload = Bytes::from(event.event.body.clone());
        let refused = |e: &dyn std::fmt::Display| {
            DeliveryError::permanent(format!("{url} refused the message: {e}"))
        };
        if !self.captured(&conn.client, &subject).await? {
            conn.client
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| match e.kind() {
                    async_nats::PublishErrorKind::MaxPayloadExceeded => refused(&e),
                    _ => publish_failure(url, e),
                })?;
            return Ok(false);
        }
        let message = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(format!("{}:{}", self.name, delivery_id(event)));
        let acked = match conn.js.send_publish(subject.clone(), message).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == JsPublishErrorKind::MaxPayloadExceeded => Err(refused(&e)),
            Err(e) => {
                if e.kind() == JsPublishErrorKind::StreamNotFound {
                    // The stream went away: look again next time.
                    self.streams
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&subject);
                }
                Err(publish_failure(url, e))
            }
        }
    }
}

#[async_trait]
impl Sink for NatsSink {
    async fn probe(&self) -> Result<(), DeliveryError> {
        self.conn().await.map(|_| ())
    }

    async fn deliver(&self, batch: &[Event]) -> Result<Accepted, BatchError> {
        let at = |delivered: usize| move |error: DeliveryError| BatchError { delivered, error };
        let conn = self.conn().await.map_err(at(0))?;
        let client = &conn.client;
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(at(0)(DeliveryError::transient(format!(
                "not connected to {}",
                self.settings.url
            ))));
        }
        // Messages published on core NATS since the last flush: the first one's index.
        let mut unflushed: Option<usize> = None;
        for (i, event) in batch.iter().enumerate() {
            let acked = match self.publish(conn, event).await {
                Ok(acked) => acked,
                Err(e) => {
                    // What went to core NATS before the failure is not confirmed.
                    return Err(at(unflushed.unwrap_or(i))(e));
                }
            };
            if !acked && unflushed.is_none() {
                unflushed = Some(i);
            }
        }
        if let Some(first) = unflushed {
            tokio::time::timeout(self.timeout, client.flush())
                .await
                .map_err(|_| publish_failure(&self.settings.url, "flush timed out"))
                .and_then(|r| r.map_err(|e| publish_failure(&self.settings.url, e)))
                .map_err(at(first))?;
        }
        Ok(Accepted::Delivered)
    }
}
