//! [`HubClient`]: the IoT Hub registry REST API, every request signed with a shared access
//! signature; and the helpers the files that extend it share.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, header};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::TokioExecutor;
use ironhub_auth::sas::url_encode;
use ironhub_auth::{ConnectionString, sas, unix_now};
use ironhub_wire::certificate::{
    CertificateDescription, CertificateList, CertificateUpload, VerificationProof,
};
use ironhub_wire::hub::{
    BulkResult, ConsumerGroupName, ConsumerGroupView, Device, DeviceSpec, ExportImportDevice,
    FeedbackRecord, MethodRequest, MethodResult, PurgeResult, RegenerateRequest, RegenerateResult,
    RegistryStatistics, Twin, TwinPatch,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ClientError, parse_service_error};
use crate::lines::LineStream;
use crate::tls;

/// The `body` of a request that sends none.
pub const NO_BODY: Option<&Value> = None;

/// The REST API version sent with every hub request (the one the Python service SDK uses).
pub const API_VERSION: &str = "2021-04-12";

/// How long a signed request's token stays valid.
pub const TOKEN_VALIDITY_SECS: u64 = 3600;

/// How long one request may take, connection included.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A client for one hub, authenticated by a shared access policy's connection string.
#[derive(Clone)]
pub struct HubClient {
    /// `HostName` as given: it may carry `:port`.
    pub(crate) host: String,
    /// The token's resource: the host without its port.
    pub(crate) resource: String,
    pub(crate) key: String,
    pub(crate) key_name: Option<String>,
    /// A bearer token sent instead of a SAS token (`--auth-type login`).
    bearer: Option<String>,
    /// `?api-version=` of every request.
    api_version: &'static str,
    http: Client<HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>,
}

/// How the client finds the hub's address: the host name's DNS answer, or, on the server's own
/// machine, one fixed address (the host name may not resolve there). Either way the URL, the
/// `Host` header, SNI and the certificate check use the host name.
#[derive(Debug, Clone, Default)]
struct Resolver {
    fixed: Option<SocketAddr>,
}

type Resolving =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        match self.fixed {
            Some(addr) => Box::pin(std::future::ready(Ok(vec![addr].into_iter()))),
            None => {
                let lookup = GaiResolver::new().call(name);
                Box::pin(async move { Ok(lookup.await?.collect::<Vec<_>>().into_iter()) })
            }
        }
    }
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
        HubClient::build(cs, extra_ca_pems, None)
    }

    /// [`HubClient::new`], but every connection goes to `address` instead of the host name's
    /// DNS answer, while TLS still verifies the certificate against the host name (SNI and name
    /// check). For the server's own machine, where `--hostname myhub.example` need not resolve.
    pub fn connecting_to(
        cs: ConnectionString,
        extra_ca_pems: &[PathBuf],
        address: SocketAddr,
    ) -> Result<HubClient, ClientError> {
        HubClient::build(cs, extra_ca_pems, Some(address))
    }

    fn build(
        cs: ConnectionString,
        extra_ca_pems: &[PathBuf],
        address: Option<SocketAddr>,
    ) -> Result<HubClient, ClientError> {
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
        let mut tcp = HttpConnector::new_with_resolver(Resolver { fixed: address });
        // hyper-rustls takes https:// URLs only when the HTTP connector leaves them alone.
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HubClient {
            resource: host_without_port(&host).to_owned(),
            host,
            key,
            key_name: cs.shared_access_key_name.filter(|n| !n.is_empty()),
            bearer: None,
            api_version: API_VERSION,
            http,
        })
    }

    /// The same client sending another `api-version` (the DPS service API's is
    /// [`crate::DPS_API_VERSION`]).
    pub fn with_api_version(mut self, api_version: &'static str) -> HubClient {
        self.api_version = api_version;
        self
    }

    /// The same client authenticating every request with `Authorization: Bearer {token}` (a
    /// token from an OpenID Connect issuer the server accepts) instead of a SAS token.
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> HubClient {
        self.bearer = Some(token.into());
        self
    }

    /// The `Authorization` value of a request: the bearer token, or a fresh SAS token.
    fn authorization(&self) -> Result<String, ClientError> {
        match &self.bearer {
            Some(token) => Ok(format!("Bearer {token}")),
            None => self.sas_token(unix_now() + TOKEN_VALIDITY_SECS),
        }
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
        build_url(&self.host, self.api_version, path, query)
    }

    /// Sends one signed request and returns the JSON answer read as `R` (an empty body, e.g.
    /// `204 No Content`, reads as JSON `null`). `if_match` is sent quoted (`"etag"`), as the
    /// SDKs send it. [`NO_BODY`] sends no body.
    pub async fn request<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        if_match: Option<&str>,
    ) -> Result<R, ClientError> {
        self.request_within(method, path, query, body, if_match, REQUEST_TIMEOUT)
            .await
    }

    /// [`HubClient::request`] with its own time limit (a direct method may wait minutes).
    pub async fn request_within<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        if_match: Option<&str>,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let mut headers = Vec::new();
        if let Some(etag) = if_match {
            headers.push((header::IF_MATCH, header_value(&quote_etag(etag))?));
        }
        let payload = match body {
            Some(v) => {
                headers.push((
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                ));
                Bytes::from(serde_json::to_vec(v).map_err(|e| ClientError::Transport {
                    host: self.host.clone(),
                    detail: format!("cannot encode the request body: {e}"),
                })?)
            }
            None => Bytes::new(),
        };
        let response = self
            .request_raw(method, path, query, headers, payload, timeout)
            .await?;
        response.json()
    }

    /// Sends one signed request with a raw body and extra headers, and returns the whole answer
    /// (status, headers, body) when its status is a success; other statuses are
    /// [`ClientError::Service`] errors.
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<RawResponse, ClientError> {
        let response = self
            .send(method, path, query, headers, body, timeout)
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(response.service_error());
        }
        Ok(response)
    }

    /// Sends one signed request and returns the answer whatever its status.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<RawResponse, ClientError> {
        let request =
            self.signed_request(method, path, query, headers, body, "application/json")?;

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

        Ok(RawResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: bytes,
        })
    }

    /// A signed request: `Authorization` (a fresh SAS token or the bearer token), `Accept`, `User-Agent`, and the
    /// caller's headers and body.
    fn signed_request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
        accept: &'static str,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let url = self.url(path, query);
        let token = self.authorization()?;
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, token)
            .header(header::ACCEPT, accept)
            .header(
                header::USER_AGENT,
                concat!("ironhub-client/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(body))
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
        let request = self.signed_request(
            Method::GET,
            path,
            query,
            Vec::new(),
            Bytes::new(),
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
    pub async fn list_consumer_groups(&self) -> Result<Vec<ConsumerGroupName>, ClientError> {
        self.request(Method::GET, "/events/consumergroups", &[], NO_BODY, None)
            .await
    }

    /// `GET /events/consumergroups/{group}`: the group with its checkpoints.
    pub async fn get_consumer_group(&self, group: &str) -> Result<ConsumerGroupView, ClientError> {
        self.request(Method::GET, &consumer_group_path(group), &[], NO_BODY, None)
            .await
    }

    /// `PUT /events/consumergroups/{group}`: creates the group (an existing one is kept).
    pub async fn create_consumer_group(
        &self,
        group: &str,
    ) -> Result<ConsumerGroupView, ClientError> {
        self.request(Method::PUT, &consumer_group_path(group), &[], NO_BODY, None)
            .await
    }

    /// `DELETE /events/consumergroups/{group}`.
    pub async fn delete_consumer_group(&self, group: &str) -> Result<(), ClientError> {
        self.request(
            Method::DELETE,
            &consumer_group_path(group),
            &[],
            NO_BODY,
            None,
        )
        .await
        .map(|_: Value| ())
    }

    /// The hub's CA certificates (`/certificates`).
    pub fn certificates(&self) -> Certificates<'_> {
        Certificates {
            client: self,
            prefix: "/certificates",
        }
    }

    /// `GET /certificates`: `{"value": [certificate, …]}`.
    pub async fn list_certificates(&self) -> Result<CertificateList, ClientError> {
        self.certificates().list().await
    }

    /// `GET /certificates/{name}`.
    pub async fn get_certificate(&self, name: &str) -> Result<CertificateDescription, ClientError> {
        self.certificates().get(name).await
    }

    /// `PUT /certificates/{name}`; see [`Certificates::put`].
    pub async fn put_certificate(
        &self,
        name: &str,
        certificate: &str,
        is_verified: bool,
        etag: Option<&str>,
    ) -> Result<CertificateDescription, ClientError> {
        self.certificates()
            .put(name, certificate, is_verified, etag)
            .await
    }

    /// `DELETE /certificates/{name}`, with `If-Match` when an etag is given.
    pub async fn delete_certificate(
        &self,
        name: &str,
        etag: Option<&str>,
    ) -> Result<(), ClientError> {
        self.certificates().delete(name, etag).await
    }

    /// `POST /certificates/{name}/generateVerificationCode`; see
    /// [`Certificates::generate_verification_code`].
    pub async fn generate_verification_code(
        &self,
        name: &str,
        etag: Option<&str>,
    ) -> Result<CertificateDescription, ClientError> {
        self.certificates()
            .generate_verification_code(name, etag)
            .await
    }

    /// `POST /certificates/{name}/verify`; see [`Certificates::verify`].
    pub async fn verify_certificate(
        &self,
        name: &str,
        proof: &str,
        etag: Option<&str>,
    ) -> Result<CertificateDescription, ClientError> {
        self.certificates().verify(name, proof, etag).await
    }

    /// `GET /devices/{id}`: the device, with its keys and etag.
    pub async fn get_device(&self, id: &str) -> Result<Device, ClientError> {
        self.request(Method::GET, &device_path(id), &[], NO_BODY, None)
            .await
    }

    /// `PUT /devices/{id}` without `If-Match`: creates the device (409 if it exists).
    pub async fn create_device(&self, id: &str, body: &DeviceSpec) -> Result<Device, ClientError> {
        self.request(Method::PUT, &device_path(id), &[], Some(body), None)
            .await
    }

    /// `PUT /devices/{id}` with `If-Match: "<etag>"` (or `"*"`): replaces an existing device.
    pub async fn update_device(
        &self,
        id: &str,
        body: &DeviceSpec,
        etag: Option<&str>,
    ) -> Result<Device, ClientError> {
        let etag = etag.unwrap_or("*");
        self.request(Method::PUT, &device_path(id), &[], Some(body), Some(etag))
            .await
    }

    /// `DELETE /devices/{id}` with `If-Match: "<etag>"` (or `"*"`).
    pub async fn delete_device(&self, id: &str, etag: Option<&str>) -> Result<(), ClientError> {
        let etag = etag.unwrap_or("*");
        self.request(Method::DELETE, &device_path(id), &[], NO_BODY, Some(etag))
            .await
            .map(|_: Value| ())
    }

    /// `GET /devices?top=N`: up to `top` devices (IoT Hub caps this at 1000).
    pub async fn list_devices(&self, top: Option<u32>) -> Result<Vec<Device>, ClientError> {
        let query: Vec<(&str, String)> = top.map(|n| ("top", n.to_string())).into_iter().collect();
        self.request(Method::GET, "/devices", &query, NO_BODY, None)
            .await
    }

    /// `GET /statistics/devices`: total, enabled and disabled device counts.
    pub async fn registry_statistics(&self) -> Result<RegistryStatistics, ClientError> {
        self.request(Method::GET, "/statistics/devices", &[], NO_BODY, None)
            .await
    }

    /// `POST /devices`: a bulk create/update/delete of `ExportImportDevice` entries. IoT Hub
    /// answers 200 or 400 with `{"isSuccessful":…,"errors":[…],"warnings":[…]}`; a 400 with that
    /// shape is returned as `Ok` so that callers can read the per-device errors.
    pub async fn bulk(&self, body: &[ExportImportDevice]) -> Result<BulkResult, ClientError> {
        self.post_for_result("/devices", body).await
    }

    /// `POST /devices/keys/regenerate`: new keys for the named devices. IoT Hub answers 200,
    /// 207 (some devices failed) or 400 (all failed) with a [`RegenerateResult`]; each is
    /// returned as `Ok` so that callers can read the per-device errors.
    pub async fn regenerate_keys(
        &self,
        body: &RegenerateRequest,
    ) -> Result<RegenerateResult, ClientError> {
        self.post_for_result("/devices/keys/regenerate", body).await
    }

    /// A `POST` whose 400 may still carry a per-entry result: one that reads as `T` is `Ok`
    /// (an error body does not).
    async fn post_for_result<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let payload =
            serde_json::to_vec(body).map_err(|e| ClientError::InvalidRequest(e.to_string()))?;
        let headers = vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )];
        let response = self
            .send(
                Method::POST,
                path,
                &[],
                headers,
                Bytes::from(payload),
                REQUEST_TIMEOUT,
            )
            .await?;
        match response.status {
            200..300 => response.json(),
            400 => response.json().map_err(|_| response.service_error()),
            _ => Err(response.service_error()),
        }
    }

    /// `GET /twins/{id}`: the device twin.
    pub async fn get_twin(&self, id: &str) -> Result<Twin, ClientError> {
        self.request(Method::GET, &twin_path(id), &[], NO_BODY, None)
            .await
    }

    /// `PATCH /twins/{id}` (tags and desired properties merged) or, with `replace`,
    /// `PUT /twins/{id}`; `If-Match` is the etag or `"*"`.
    pub async fn update_twin(
        &self,
        id: &str,
        twin: &TwinPatch,
        etag: Option<&str>,
        replace: bool,
    ) -> Result<Twin, ClientError> {
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
    pub async fn invoke_method(
        &self,
        id: &str,
        call: &MethodRequest,
    ) -> Result<MethodResult, ClientError> {
        let seconds = |s: Option<i64>| s.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        let wait = seconds(call.response_timeout_in_seconds).max(30)
            + seconds(call.connect_timeout_in_seconds);
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

    /// `POST /devices/{id}/messages/deviceBound` (ironhub's REST send; IoT Hub itself sends
    /// cloud-to-device messages only over AMQP): queues `message` for the device and returns
    /// the message id the hub gave it (the one asked for, or a generated UUID).
    pub async fn send_c2d(&self, id: &str, message: &C2dMessage) -> Result<String, ClientError> {
        let response = self
            .request_raw(
                Method::POST,
                &format!("{}/messages/deviceBound", device_path(id)),
                &[],
                message.headers()?,
                Bytes::from(message.body.clone()),
                REQUEST_TIMEOUT,
            )
            .await?;
        response
            .header("iothub-messageid")
            .map(str::to_owned)
            .or_else(|| message.message_id.clone())
            .ok_or(ClientError::InvalidResponse {
                status: response.status,
                detail: "no iothub-messageid header in the answer".into(),
            })
    }

    /// `DELETE /devices/{id}/commands`: empties the device's cloud-to-device queue; IoT Hub
    /// answers `{"totalMessagesPurged": n, "deviceId": "…"}`.
    pub async fn purge_c2d(&self, id: &str) -> Result<PurgeResult, ClientError> {
        let path = format!("{}/commands", device_path(id));
        self.request(Method::DELETE, &path, &[], NO_BODY, None)
            .await
    }

    /// `GET /messages/serviceBound/feedback`: the next batch of feedback records, locked until
    /// it is completed or abandoned with its lock token; `None` when there is none.
    pub async fn receive_feedback(&self) -> Result<Option<FeedbackBatch>, ClientError> {
        let response = self
            .request_raw(
                Method::GET,
                FEEDBACK_PATH,
                &[],
                Vec::new(),
                Bytes::new(),
                REQUEST_TIMEOUT,
            )
            .await?;
        if response.status == 204 {
            return Ok(None);
        }
        let lock_token = response
            .header("iothub-locktoken")
            .or_else(|| response.header("etag"))
            .map(|t| t.trim_matches('"').to_owned())
            .ok_or(ClientError::InvalidResponse {
                status: response.status,
                detail: "a feedback batch without a lock token (ETag)".into(),
            })?;
        let records = response
            .json::<Option<Vec<FeedbackRecord>>>()?
            .unwrap_or_default();
        Ok(Some(FeedbackBatch {
            lock_token,
            records,
        }))
    }

    /// `DELETE /messages/serviceBound/feedback/{lockToken}`: completes a feedback batch.
    pub async fn complete_feedback(&self, lock_token: &str) -> Result<(), ClientError> {
        let path = format!("{FEEDBACK_PATH}/{}", url_encode(lock_token));
        self.request(Method::DELETE, &path, &[], NO_BODY, None)
            .await
            .map(|_: Value| ())
    }

    /// `POST /messages/serviceBound/feedback/{lockToken}/abandon`: gives a feedback batch back
    /// to the queue at once.
    pub async fn abandon_feedback(&self, lock_token: &str) -> Result<(), ClientError> {
        let path = format!("{FEEDBACK_PATH}/{}/abandon", url_encode(lock_token));
        self.request(Method::POST, &path, &[], NO_BODY, None)
            .await
            .map(|_: Value| ())
    }
}

/// Where the hub keeps feedback on cloud-to-device messages.
const FEEDBACK_PATH: &str = "/messages/serviceBound/feedback";

/// Prefix of the headers that carry a message's application properties.
const APP_PROPERTY_PREFIX: &str = "iothub-app-";

/// A successful answer, whole.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    /// The IoT Hub error this answer carries (for a status that is not a success).
    fn service_error(&self) -> ClientError {
        // IoT Hub names its error in `iothub-errorcode`, DPS numbers it in `x-ms-error-code`.
        let code = self
            .header("iothub-errorcode")
            .or_else(|| self.header("x-ms-error-code"));
        parse_service_error(self.status, code, &self.body)
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON read as `T` (an empty body reads as `null`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        let read = if self.body.iter().all(u8::is_ascii_whitespace) {
            serde_json::from_value(Value::Null)
        } else {
            serde_json::from_slice(&self.body)
        };
        read.map_err(|e| ClientError::InvalidResponse {
            status: self.status,
            detail: e.to_string(),
        })
    }
}

/// A cloud-to-device message to send; everything but the body is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct C2dMessage {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub user_id: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// Absolute expiry, as RFC 3339 (`2026-01-02T03:04:05Z`) or an HTTP date.
    pub expiry: Option<String>,
    /// `none`, `positive`, `negative` or `full`.
    pub ack: Option<String>,
    /// Application properties, in the order the device should see them.
    pub properties: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl C2dMessage {
    /// The request headers: system properties as `iothub-*`, `Content-Type` and
    /// `Content-Encoding`; application properties as `iothub-app-{name}` with the name
    /// percent-encoded (upper-case letters included), since HTTP lower-cases header names and
    /// allows only some characters in them; the hub decodes it.
    pub fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, ClientError> {
        let system = [
            ("iothub-messageid", &self.message_id),
            ("iothub-correlationid", &self.correlation_id),
            ("iothub-userid", &self.user_id),
            ("content-type", &self.content_type),
            ("content-encoding", &self.content_encoding),
            ("iothub-expiry", &self.expiry),
            ("iothub-ack", &self.ack),
        ];
        let mut headers = Vec::new();
        for (name, value) in system {
            if let Some(value) = value {
                headers.push((HeaderName::from_static(name), header_value(value)?));
            }
        }
        for (name, value) in &self.properties {
            let encoded = format!("{APP_PROPERTY_PREFIX}{}", encode_property_name(name));
            let header_name = HeaderName::from_bytes(encoded.as_bytes()).map_err(|e| {
                ClientError::InvalidRequest(format!("the property name '{name}': {e}"))
            })?;
            headers.push((header_name, header_value(value)?));
        }
        Ok(headers)
    }
}

/// An application property's name as it goes into an `iothub-app-` header name: every byte
/// but lower-case letters, digits, `-`, `_` and `.` percent-encoded (`Topic` → `%54opic`).
pub fn encode_property_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A header value from text (UTF-8 is sent as is; control characters are refused).
pub(crate) fn header_value(value: &str) -> Result<HeaderValue, ClientError> {
    HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
        ClientError::InvalidRequest(format!(
            "'{value}' cannot be sent in an HTTP header (it holds a control character)"
        ))
    })
}

/// A batch of feedback records (`GET /messages/serviceBound/feedback`), with the lock token
/// that completes or abandons it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackBatch {
    pub lock_token: String,
    pub records: Vec<FeedbackRecord>,
}

/// A service's CA certificates, in the ARM shape (`{"id","name","etag","type","properties":
/// {…}}`): the hub's under `/certificates`, the DPS instance's under `/dps/certificates`.
#[derive(Debug, Clone, Copy)]
pub struct Certificates<'c> {
    pub(crate) client: &'c HubClient,
    pub(crate) prefix: &'static str,
}

impl Certificates<'_> {
    /// `{prefix}/{name}` with the name percent-encoded as one path segment.
    pub(crate) fn path(&self, name: &str) -> String {
        format!("{}/{}", self.prefix, url_encode(name))
    }

    /// `GET {prefix}`: `{"value": [certificate, …]}`.
    pub async fn list(&self) -> Result<CertificateList, ClientError> {
        self.client
            .request(Method::GET, self.prefix, &[], NO_BODY, None)
            .await
    }

    /// `GET {prefix}/{name}`.
    pub async fn get(&self, name: &str) -> Result<CertificateDescription, ClientError> {
        self.client
            .request(Method::GET, &self.path(name), &[], NO_BODY, None)
            .await
    }

    /// `PUT {prefix}/{name}` with `{"properties":{"certificate":…,"isVerified":…}}`: without
    /// an etag it creates the certificate (an existing name is a conflict); with one (or `*`)
    /// it replaces it.
    pub async fn put(
        &self,
        name: &str,
        certificate: &str,
        is_verified: bool,
        etag: Option<&str>,
    ) -> Result<CertificateDescription, ClientError> {
        let body = CertificateUpload::new(certificate, is_verified);
        self.client
            .request(Method::PUT, &self.path(name), &[], Some(&body), etag)
            .await
    }

    /// `DELETE {prefix}/{name}`, with `If-Match` when an etag is given.
    pub async fn delete(&self, name: &str, etag: Option<&str>) -> Result<(), ClientError> {
        self.client
            .request(Method::DELETE, &self.path(name), &[], NO_BODY, etag)
            .await
            .map(|_: Value| ())
    }

    /// `POST {prefix}/{name}/generateVerificationCode`: the certificate with
    /// `properties.verificationCode`, the CN a proof-of-possession certificate must carry.
    pub async fn generate_verification_code(
        &self,
        name: &str,
        etag: Option<&str>,
    ) -> Result<CertificateDescription, ClientError> {
        let path = format!("{}/generateVerificationCode", self.path(name));
        self.client
            .request(Method::POST, &path, &[], NO_BODY, etag)
            .await
    }

    /// `POST {prefix}/{name}/verify` with `{"certificate": proof}`: a certificate whose CN is
    /// the verification code, signed by the CA's key, proves possession of that key.
    pub async fn verify(
        &self,
        name: &str,
        proof: &str,
        etag: Option<&str>,
    ) -> Result<CertificateDescription, ClientError> {
        let path = format!("{}/verify", self.path(name));
        let body = VerificationProof {
            certificate: Some(proof.to_owned()),
        };
        self.client
            .request(Method::POST, &path, &[], Some(&body), etag)
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

/// `/devices/{id}` with the id percent-encoded as one path segment.
pub fn device_path(id: &str) -> String {
    format!("/devices/{}", url_encode(id))
}

fn build_url(host: &str, api_version: &str, path: &str, query: &[(&str, String)]) -> String {
    let mut url = format!("https://{host}{path}?api-version={api_version}");
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
pub(crate) fn quote_etag(etag: &str) -> String {
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

    #[test]
    fn c2d_headers_carry_system_properties_and_encoded_property_names() {
        let m = C2dMessage {
            message_id: Some("m1".into()),
            ack: Some("full".into()),
            content_type: Some("text/plain".into()),
            properties: vec![
                ("k".into(), "v".into()),
                ("Topic".into(), "/power".into()),
                ("a b%".into(), "é".into()),
            ],
            ..C2dMessage::default()
        };
        let headers: Vec<(String, Vec<u8>)> = m
            .headers()
            .unwrap()
            .into_iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(
            headers,
            [
                ("iothub-messageid".to_owned(), b"m1".to_vec()),
                ("content-type".to_owned(), b"text/plain".to_vec()),
                ("iothub-ack".to_owned(), b"full".to_vec()),
                ("iothub-app-k".to_owned(), b"v".to_vec()),
                ("iothub-app-%54opic".to_owned(), b"/power".to_vec()),
                ("iothub-app-a%20b%25".to_owned(), "é".as_bytes().to_vec()),
            ]
        );
        let bad = C2dMessage {
            properties: vec![("k".into(), "line\nbreak".into())],
            ..C2dMessage::default()
        };
        assert!(bad.headers().is_err());
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
