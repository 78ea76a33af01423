//! The webhook endpoint: one `POST` a message to the endpoint's URL, the body exactly the
//! message's bytes, `Content-Type` the message's content type (`application/octet-stream`
//! when it has none), its properties as headers (`headers.rs`) and the endpoint's own headers.
//! A 2xx answer is delivery; 408, 429, any 5xx, a timeout or a failed connection may pass on a
//! later attempt; any other status (400, 401, 404, 3xx …) is permanent.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use ironhub_client::WebClient;
use ironhub_store::Event;

use crate::headers::message_headers;
use crate::settings::{DEFAULT_TIMEOUT_SECS, EndpointConfigError, WebhookSettings};
use crate::sink::{Accepted, BatchError, DeliveryError, Sink};

/// A [`Sink`] posting each message to a URL (see the module documentation).
#[derive(Debug)]
pub struct WebhookSink {
    url: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
    client: WebClient,
}

impl WebhookSink {
    pub fn new(settings: &WebhookSettings) -> Result<WebhookSink, EndpointConfigError> {
        let cas: Vec<_> = settings.ca_file.iter().cloned().collect();
        let client = WebClient::new(&cas).map_err(|e| EndpointConfigError::new(e.to_string()))?;
        Ok(WebhookSink {
            url: settings.url.clone(),
            headers: settings
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            timeout: Duration::from_secs(u64::from(
                settings.timeout_in_seconds.unwrap_or(DEFAULT_TIMEOUT_SECS),
            )),
            client,
        })
    }

    async fn post(&self, event: &Event) -> Result<(), DeliveryError> {
        let content_type = event
            .event
            .system_properties
            .get("content-type")
            .filter(|t| http::HeaderValue::from_str(t).is_ok())
            .map_or("application/octet-stream", String::as_str);
        let properties = message_headers(event);
        let headers: Vec<(&str, &str)> = std::iter::once(("content-type", content_type))
            .chain(properties.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .chain(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect();
        let answer = self
            .client
            .exchange(
                Method::POST,
                &self.url,
                &headers,
                Bytes::from(event.event.body.clone()),
                self.timeout,
            )
            .await
            .map_err(|e| match e {
                ironhub_client::ClientError::InvalidRequest(m) => DeliveryError::permanent(m),
                ironhub_client::ClientError::CertificateNotTrusted { host, detail } => {
                    DeliveryError::transient(format!(
                        "certificate not trusted: {host} presented a certificate no trusted CA \
                         signed ({detail}); give the endpoint a caFile with its CA"
                    ))
                }
                other => DeliveryError::transient(other.to_string()),
            })?;
        match answer.status {
            200..=299 => Ok(()),
            status => {
                let detail = String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
                    .into_owned();
                let message = format!(
                    "{} answered HTTP {status} {}{}{detail}",
                    self.url,
                    answer.reason(),
                    if detail.is_empty() { "" } else { ": " }
                );
                if matches!(status, 408 | 429 | 500..=599) {
                    Err(DeliveryError::transient(message))
                } else {
                    Err(DeliveryError::permanent(message))
                }
            }
        }
    }
}

#[async_trait]
impl Sink for WebhookSink {
    async fn probe(&self) -> Result<(), DeliveryError> {
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e| DeliveryError::permanent(format!("{}: {e}", self.url)))?;
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect((host, port))).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(DeliveryError::transient(format!(
                "cannot connect to {host}:{port}: {e}"
            ))),
            Err(_) => Err(DeliveryError::transient(format!(
                "cannot connect to {host}:{port} within {} s",
                self.timeout.as_secs()
            ))),
        }
    }

    async fn deliver(&self, batch: &[Event]) -> Result<Accepted, BatchError> {
        for (delivered, event) in batch.iter().enumerate() {
            self.post(event)
                .await
                .map_err(|error| BatchError { delivered, error })?;
        }
        Ok(Accepted::Delivered)
    }
}
