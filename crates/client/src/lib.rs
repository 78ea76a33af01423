//! A small async HTTPS client for the Azure IoT Hub registry REST API.
//!
//! It speaks to any hub the way the Azure service SDKs do: `https://{HostName}`, every request
//! signed with a shared access signature made from a service connection string, and
//! `?api-version=2021-04-12` on every path. The same client reaches an ironhub server or a real
//! Azure IoT Hub; the CLI, the DPS (for remote linked hubs) and tests use it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ironhub_client::ClientError> {
//! use ironhub_auth::ConnectionString;
//! let cs = ConnectionString::parse(
//!     "HostName=myhub.example;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0",
//! ).map_err(|e| ironhub_client::ClientError::ConnectionString(e.to_string()))?;
//! let hub = ironhub_client::HubClient::new(cs, &[])?;
//! let device = hub.get_device("d1").await?;
//! println!("{}", device["etag"]);
//! # Ok(()) }
//! ```

mod error;
mod lines;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ironhub_auth::sas::url_encode;
use ironhub_auth::{ConnectionString, sas, unix_now};
use serde_json::Value;

pub use error::{ClientError, parse_service_error};
pub use lines::LineStream;

/// The REST API version sent with every request (the one the Python service SDK uses).
pub const API_VERSION: &str = "2021-04-12";

/// How long a signed request's token stays valid.
pub const TOKEN_VALIDITY_SECS: u64 = 3600;

/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A client for one hub, authenticated by a shared access policy's connection string.
#[derive(Clone)]
pub struct HubClient {
    /// `HostName` as given: it may carry `:port`.
    host: String,
    /// The token's resource: the host without its port.
    resource: String,
    key: String,
    key_name: Option<String>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("host", &self.host)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// A client for the hub named by `cs` (`HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`).
    /// TLS trusts the system's roots plus the certificates in `extra_ca_pems`.
    pub fn new(cs: ConnectionString, extra_ca_pems: &[PathBuf]) -> Result<HubClient, ClientError> {
        let key = cs
            .key()
            .map_err(|e| ClientError::ConnectionString(e.to_string()))?
            .to_owned();
        // Fail now, not at the first request, if the key cannot sign.
        sas::generate("check", &key, 0, None).map_err(|_| {
            ClientError::ConnectionString("the SharedAccessKey is not base64".into())
        })?;
        let host = cs.host_name.trim().to_owned();
        if host.is_empty() || host.contains(['/', ' ', '?', '#']) {
            return Err(ClientError::ConnectionString(format!(
                "'{host}' is not a host name (HostName takes a name and an optional :port)"
            )));
        }
        let tls = tls::client_config(extra_ca_pems)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HubClient {
            resource: host_without_port(&host).to_owned(),
            host,
            key,
            key_name: cs.shared_access_key_name.filter(|n| !n.is_empty()),
            http,
        })
    }

    /// The hub's `HostName` as given in the connection string (may carry `:port`).
    pub fn host_name(&self) -> &str {
        &self.host
    }

    /// The `Authorization` value for a request: `SharedAccessSignature sr=<host>&sig=…&se=…&skn=…`
    /// where the host has no port and the token expires at `expiry` (Unix seconds).
    pub fn sas_token(&self, expiry: u64) -> Result<String, ClientError> {
        sas::generate(&self.resource, &self.key, expiry, self.key_name.as_deref())
            .map_err(|e| ClientError::ConnectionString(e.to_string()))
    }

    /// `https://{host}{path}?api-version=2021-04-12[&name=value…]`, with query values encoded.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        build_url(&self.host, path, query)
    }

    /// Sends one signed request and returns the JSON answer (`Value::Null` for an empty body,
    /// e.g. `204 No Content`). `if_match` is sent quoted (`"etag"`), as the SDKs send it.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        self.request_within(method, path, query, body, if_match, REQUEST_TIMEOUT)
            .await
    }

    /// [`HubClient::request`] with its own time limit (a direct method may wait minutes).
    pub async fn request_within(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let request =
            self.build_request(method, path, query, body, if_match, "application/json")?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| tls::classify(&self.host, &e))?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| tls::classify(&self.host, &e))?
                .to_bytes();
            Ok::<_, ClientError>((parts, bytes))
        };
        let (parts, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                host: self.host.clone(),
                seconds: timeout.as_secs(),
            })??;

        let status = parts.status.as_u16();
        if !parts.status.is_success() {
            let code = parts
                .headers
                .get("iothub-errorcode")
                .and_then(|v| v.to_str().ok());
            return Err(parse_service_error(status, code, &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::InvalidResponse {
            status,
            detail: e.to_string(),
        })
    }

    /// A signed request: `Authorization`, `Accept`, `User-Agent`, `If-Match` when given, and a
    /// JSON body when given.
    fn build_request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
        accept: &'static str,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let url = self.url(path, query);
        let token = self.sas_token(unix_now() + TOKEN_VALIDITY_SECS)?;
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, token)
            .header(header::ACCEPT, accept)
            .header(
                header::USER_AGENT,
                concat!("ironhub-client/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(etag) = if_match {
            builder = builder.header(header::IF_MATCH, quote_etag(etag));
        }
        let payload = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json; charset=utf-8");
                Bytes::from(serde_json::to_vec(v).map_err(|e| ClientError::Transport {
                    host: self.host.clone(),
                    detail: format!("cannot encode the request body: {e}"),
                })?)
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(payload))
            .map_err(|e| ClientError::Transport {
                host: self.host.clone(),
                detail: format!("cannot build a request for {url}: {e}"),
            })
    }

    /// Sends a signed `GET` and returns its body as a stream of lines, for a response that
    /// lasts as long as the server keeps it open (the event stream). Only the wait for the
    /// response's head is bounded (by the usual request timeout); reading has no overall limit,
    /// so callers bound each [`LineStream::next_line`] themselves if they need to.
    pub async fn open_line_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<LineStream, ClientError> {
        let request = self.build_request(
            Method::GET,
            path,
            query,
            None,
            None,
            "application/x-ndjson, application/json",
        )?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| ClientError::Timeout {
                host: self.host.clone(),
                seconds: REQUEST_TIMEOUT.as_secs(),
            })?
            .map_err(|e| tls::classify(&self.host, &e))?;
        let (parts, body) = response.into_parts();
        if !parts.status.is_success() {
            let bytes = tokio::time::timeout(REQUEST_TIMEOUT, body.collect())
                .await
                .map_err(|_| ClientError::Timeout {
                    host: self.host.clone(),
                    seconds: REQUEST_TIMEOUT.as_secs(),
                })?
                .map_err(|e| tls::classify(&self.host, &e))?
                .to_bytes();
            let code = parts
                .headers
                .get("iothub-errorcode")
                .and_then(|v| v.to_str().ok());
            return Err(parse_service_error(parts.status.as_u16(), code, &bytes));
        }
        Ok(LineStream::new(self.host.clone(), body))
    }

    /// `GET /events/consumergroups/{group}/stream?…`: the hub's telemetry as it arrives, one
    /// JSON object a line (ironhub's event reader API; `query` takes `from`, `partition`,
    /// `deviceId` and `timeout`).
    pub async fn event_stream(
        &self,
        group: &str,
        query: &[(&str, String)],
    ) -> Result<LineStream, ClientError> {
        let path = format!("{}/stream", consumer_group_path(group));
        self.open_line_stream(&path, query).await
    }

    /// `GET /events/consumergroups`: `[{"name": …}, …]`.
    pub async fn list_consumer_groups(&self) -> Result<Value, ClientError> {
        self.request(Method::GET, "/events/consumergroups", &[], None, None)
            .await
    }

    /// `GET /events/consumergroups/{group}`: the group with its checkpoints.
    pub async fn get_consumer_group(&self, group: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, &consumer_group_path(group), &[], None, None)
            .await
    }

    /// `PUT /events/consumergroups/{group}`: creates the group (an existing one is kept).
    pub async fn create_consumer_group(&self, group: &str) -> Result<Value, ClientError> {
        self.request(Method::PUT, &consumer_group_path(group), &[], None, None)
            .await
    }

    /// `DELETE /events/consumergroups/{group}`.
    pub async fn delete_consumer_group(&self, group: &str) -> Result<(), ClientError> {
        self.request(Method::DELETE, &consumer_group_path(group), &[], None, None)
            .await
            .map(|_| ())
    }

    /// `GET /certificates`: `{"value": [certificate, …]}`.
    pub async fn list_certificates(&self) -> Result<Value, ClientError> {
        self.request(Method::GET, "/certificates", &[], None, None)
            .await
    }

    /// `GET /certificates/{name}`.
    pub async fn get_certificate(&self, name: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, &certificate_path(name), &[], None, None)
            .await
    }

    /// `PUT /certificates/{name}` with `{"properties":{"certificate":…,"isVerified":…}}`:
    /// without an etag it creates the certificate (an existing name is a conflict); with one
    /// (or `*`) it replaces it.
    pub async fn put_certificate(
        &self,
        name: &str,
        certificate: &str,
        is_verified: bool,
        etag: Option<&str>,
    ) -> Result<Value, ClientError> {
        let body = serde_json::json!({
            "properties": { "certificate": certificate, "isVerified": is_verified }
        });
        self.request(Method::PUT, &certificate_path(name), &[], Some(&body), etag)
            .await
    }

    /// `DELETE /certificates/{name}`, with `If-Match` when an etag is given.
    pub async fn delete_certificate(
        &self,
        name: &str,
        etag: Option<&str>,
    ) -> Result<(), ClientError> {
        self.request(Method::DELETE, &certificate_path(name), &[], None, etag)
            .await
            .map(|_| ())
    }

    /// `POST /certificates/{name}/generateVerificationCode`: the certificate with
    /// `properties.verificationCode`, the CN a proof-of-possession certificate must carry.
    pub async fn generate_verification_code(
        &self,
        name: &str,
        etag: Option<&str>,
    ) -> Result<Value, ClientError> {
        let path = format!("{}/generateVerificationCode", certificate_path(name));
        self.request(Method::POST, &path, &[], None, etag).await
    }

    /// `POST /certificates/{name}/verify` with `{"certificate": proof}`: a certificate whose CN
    /// is the verification code, signed by the CA's key, proves possession of that key.
    pub async fn verify_certificate(
        &self,
        name: &str,
        proof: &str,
        etag: Option<&str>,
    ) -> Result<Value, ClientError> {
        let path = format!("{}/verify", certificate_path(name));
        let body = serde_json::json!({ "certificate": proof });
        self.request(Method::POST, &path, &[], Some(&body), etag)
            .await
    }

    /// `GET /devices/{id}`: the device, with its keys and etag.
    pub async fn get_device(&self, id: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, &device_path(id), &[], None, None)
            .await
    }

    /// `PUT /devices/{id}` without `If-Match`: creates the device (409 if it exists).
    pub async fn create_device(&self, id: &str, body: &Value) -> Result<Value, ClientError> {
        self.request(Method::PUT, &device_path(id), &[], Some(body), None)
            .await
    }

    /// `PUT /devices/{id}` with `If-Match: "<etag>"` (or `"*"`): replaces an existing device.
    pub async fn update_device(
        &self,
        id: &str,
        body: &Value,
        etag: Option<&str>,
    ) -> Result<Value, ClientError> {
        let etag = etag.unwrap_or("*");
        self.request(Method::PUT, &device_path(id), &[], Some(body), Some(etag))
            .await
    }

    /// `DELETE /devices/{id}` with `If-Match: "<etag>"` (or `"*"`).
    pub async fn delete_device(&self, id: &str, etag: Option<&str>) -> Result<(), ClientError> {
        let etag = etag.unwrap_or("*");
        self.request(Method::DELETE, &device_path(id), &[], None, Some(etag))
            .await
            .map(|_| ())
    }

    /// `GET /devices?top=N`: up to `top` devices (IoT Hub caps this at 1000), as a JSON array.
    pub async fn list_devices(&self, top: Option<u32>) -> Result<Value, ClientError> {
        let query: Vec<(&str, String)> = top.map(|n| ("top", n.to_string())).into_iter().collect();
        self.request(Method::GET, "/devices", &query, None, None)
            .await
    }

    /// `GET /statistics/devices`: total, enabled and disabled device counts.
    pub async fn registry_statistics(&self) -> Result<Value, ClientError> {
        self.request(Method::GET, "/statistics/devices", &[], None, None)
            .await
    }

    /// `POST /devices`: a bulk create/update/delete of `ExportImportDevice` entries. IoT Hub
    /// answers 200 or 400 with `{"isSuccessful":…,"errors":[…],"warnings":[…]}`; a 400 with that
    /// shape is returned as `Ok` so that callers can read the per-device errors.
    pub async fn bulk(&self, body: &Value) -> Result<Value, ClientError> {
        self.request(Method::POST, "/devices", &[], Some(body), None)
            .await
    }

    /// `GET /twins/{id}`: the device twin.
    pub async fn get_twin(&self, id: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, &twin_path(id), &[], None, None)
            .await
    }

    /// `PATCH /twins/{id}` (tags and desired properties merged) or, with `replace`,
    /// `PUT /twins/{id}`; `If-Match` is the etag or `"*"`.
    pub async fn update_twin(
        &self,
        id: &str,
        twin: &Value,
        etag: Option<&str>,
        replace: bool,
    ) -> Result<Value, ClientError> {
        let method = if replace { Method::PUT } else { Method::PATCH };
        self.request(
            method,
            &twin_path(id),
            &[],
            Some(twin),
            Some(etag.unwrap_or("*")),
        )
        .await
    }

    /// `POST /twins/{id}/methods`: invokes a direct method and waits for the device's answer.
    /// `call` is IoT Hub's `CloudToDeviceMethod` (`methodName`, `payload`,
    /// `responseTimeoutInSeconds`, `connectTimeoutInSeconds`).
    pub async fn invoke_method(&self, id: &str, call: &Value) -> Result<Value, ClientError> {
        let seconds = |k: &str| call[k].as_u64().unwrap_or(0);
        let wait = seconds("responseTimeoutInSeconds").max(30) + seconds("connectTimeoutInSeconds");
        let path = format!("{}/methods", twin_path(id));
        self.request_within(
            Method::POST,
            &path,
            &[],
            Some(call),
            None,
            Duration::from_secs(wait + 15),
        )
        .await
    }
}

/// `/twins/{id}` with the id percent-encoded as one path segment.
pub fn twin_path(id: &str) -> String {
    format!("/twins/{}", &device_path(id)["/devices/".len()..])
}

/// `/events/consumergroups/{group}` with the name percent-encoded as one path segment.
pub fn consumer_group_path(group: &str) -> String {
    format!("/events/consumergroups/{}", url_encode(group))
}

/// `/certificates/{name}` with the name percent-encoded as one path segment.
pub fn certificate_path(name: &str) -> String {
    format!("/certificates/{}", url_encode(name))
}

/// `/devices/{id}` with the id percent-encoded as one path segment.
pub fn device_path(id: &str) -> String {
    format!("/devices/{}", url_encode(id))
}

fn build_url(host: &str, path: &str, query: &[(&str, String)]) -> String {
    let mut url = format!("https://{host}{path}?api-version={API_VERSION}");
    for (name, value) in query {
        url.push('&');
        url.push_str(&url_encode(name));
        url.push('=');
        url.push_str(&url_encode(value));
    }
    url
}

/// `host:443` → `host`, `[::1]:443` → `[::1]`; a host without a port is returned as is.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.split_once(':') {
        Some((name, port))
            if !port.is_empty()
                && !port.contains(':')
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name
        }
        _ => host,
    }
}

/// `"etag"` as the SDKs send it: quoted unless it already is.
fn quote_etag(etag: &str) -> String {
    let etag = etag.trim();
    if etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironhub_auth::SasToken;

    const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleQ==";

    fn client(host: &str) -> HubClient {
        let cs = ConnectionString::parse(&format!(
            "HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        ))
        .unwrap();
        HubClient::new(cs, &[]).unwrap()
    }

    #[tokio::test]
    async fn urls_carry_the_api_version_and_encoded_ids() {
        let c = client("myhub.example:8443");
        assert_eq!(
            c.url(&device_path("d1"), &[]),
            "https://myhub.example:8443/devices/d1?api-version=2021-04-12"
        );
        assert_eq!(
            c.url(&device_path("a b/c#?%"), &[]),
            "https://myhub.example:8443/devices/a%20b%2Fc%23%3F%25?api-version=2021-04-12"
        );
        assert_eq!(
            c.url("/devices", &[("top", "5".into())]),
            "https://myhub.example:8443/devices?api-version=2021-04-12&top=5"
        );
    }

    #[tokio::test]
    async fn tokens_sign_the_host_without_port_with_the_policy_name() {
        let c = client("MyHub.example:8443");
        let token = c.sas_token(2_000_000_000).unwrap();
        assert!(
            token.starts_with("SharedAccessSignature sr=MyHub.example&sig="),
            "{token}"
        );
        assert!(token.ends_with("&se=2000000000&skn=iothubowner"), "{token}");
        let parsed = SasToken::parse(&token).unwrap();
        parsed.verify_keys([KEY]).unwrap();
        parsed.check_resource("myhub.example/devices/x").unwrap();
        assert_eq!(parsed.key_name(), Some("iothubowner"));
    }

    #[test]
    fn ports_are_stripped_only_when_they_are_ports() {
        assert_eq!(host_without_port("h.example"), "h.example");
        assert_eq!(host_without_port("h.example:443"), "h.example");
        assert_eq!(host_without_port("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(host_without_port("[::1]:8443"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(host_without_port("h:"), "h:");
    }

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(quote_etag("MA=="), "\"MA==\"");
        assert_eq!(quote_etag("\"MA==\""), "\"MA==\"");
        assert_eq!(quote_etag("*"), "\"*\"");
    }

    #[tokio::test]
    async fn bad_connection_strings_are_refused() {
        let cs = ConnectionString::parse("HostName=h;SharedAccessKeyName=p").unwrap();
        let e = HubClient::new(cs, &[]).unwrap_err();
        assert!(e.to_string().contains("no SharedAccessKey"), "{e}");
        let cs = ConnectionString::parse("HostName=h;SharedAccessKey=!!").unwrap();
        let e = HubClient::new(cs, &[]).unwrap_err();
        assert!(e.to_string().contains("not base64"), "{e}");
        let cs = ConnectionString::parse(&format!("HostName=https://h/x;SharedAccessKey={KEY}"))
            .unwrap();
        assert!(HubClient::new(cs, &[]).is_err());
    }

    #[tokio::test]
    async fn refused_connections_say_so() {
        // Port 9 on loopback: nothing listens there.
        let c = client("127.0.0.1:9");
        let e = c.get_device("d1").await.unwrap_err();
        assert!(
            e.to_string().starts_with("cannot connect to 127.0.0.1:9"),
            "{e}"
        );
    }
}
