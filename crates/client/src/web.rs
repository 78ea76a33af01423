//! [`WebClient`]: plain, unsigned HTTP(S) calls (custom allocation webhooks, Azure Storage,
//! routing's webhook endpoints).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::ClientError;
use crate::tls;

/// A client for plain, unsigned HTTP(S) calls: the webhooks of DPS custom allocation. It
/// speaks `http://` and `https://` (system roots plus `extra_ca_pems`).
#[derive(Clone)]
pub struct WebClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for WebClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebClient")
    }
}

impl WebClient {
    pub fn new(extra_ca_pems: &[PathBuf]) -> Result<WebClient, ClientError> {
        let tls = tls::client_config(extra_ca_pems)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(WebClient {
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// `POST`s a JSON body to `url` and returns the status and body of the answer, whatever
    /// the status, within `timeout`.
    pub async fn post_json(
        &self,
        url: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let response = self
            .exchange(
                Method::POST,
                url,
                &[
                    (
                        header::CONTENT_TYPE.as_str(),
                        "application/json; charset=utf-8",
                    ),
                    (header::ACCEPT.as_str(), "application/json"),
                ],
                Bytes::from(body),
                timeout,
            )
            .await?;
        Ok((response.status, response.body.to_vec()))
    }

    /// One request to `url` with `headers` (and a User-Agent), within `timeout`; the answer
    /// whatever its status (routing's webhook endpoints deliver with it).
    pub async fn exchange(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<StorageResponse, ClientError> {
        let host = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut request = Request::builder().method(method).uri(url).header(
            header::USER_AGENT,
            concat!("ironhub/", env!("CARGO_PKG_VERSION")),
        );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| ClientError::InvalidRequest(format!("cannot call {url}: {e}")))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| tls::classify(&host, &e))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| tls::classify(&host, &e))?
                .to_bytes();
            Ok::<_, ClientError>(StorageResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                host: host.clone(),
                seconds: timeout.as_secs(),
            })?
    }
}

/// The answer of a plain HTTP(S) call: status, headers and body.
#[derive(Debug, Clone)]
pub struct StorageResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl StorageResponse {
    /// The status's reason phrase (`Created` for 201), empty when it has none.
    pub fn reason(&self) -> &'static str {
        http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or_default()
    }
}
