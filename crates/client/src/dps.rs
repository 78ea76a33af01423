//! The Device Provisioning Service's service API (api-version 2021-10-01), as
//! `az iot dps` and the DPS service SDKs call it: individual enrollments, enrollment groups,
//! registration states, their queries (paged with `x-ms-continuation`), and ironhub's
//! management calls for linked hubs (`/dps/linkedHubs`) and CA certificates
//! (`/dps/certificates`).
//!
//! It is a [`HubClient`] with another API version: the same signing (a SAS token for the host
//! with the policy name, from `HostName=…;SharedAccessKeyName=provisioningserviceowner;
//! SharedAccessKey=…`), the same TLS trust and the same error reading (DPS's
//! `{"errorCode","message",…}` bodies and its `x-ms-error-code` header).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, header};
use ironhub_auth::ConnectionString;
use ironhub_auth::sas::url_encode;
use ironhub_wire::dps::{
    AttestationMechanism, DeviceRegistrationState, EnrollmentGroup, EnrollmentRecord,
    IndividualEnrollment, LinkedHubList, LinkedHubSpec, LinkedHubView, QuerySpecification,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    Certificates, ClientError, HubClient, NO_BODY, REQUEST_TIMEOUT, RawResponse, header_value,
};

/// The DPS service API version (the one `az iot dps` and the service SDKs send).
pub const DPS_API_VERSION: &str = "2021-10-01";

/// The query every list sends: DPS answers `SELECT *` only.
const SELECT_ALL: &str = "SELECT *";

/// Which kind of enrollment a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentKind {
    /// `/enrollments/{registrationId}`
    Individual,
    /// `/enrollmentGroups/{enrollmentGroupId}`
    Group,
}

impl EnrollmentKind {
    fn prefix(self) -> &'static str {
        match self {
            EnrollmentKind::Individual => IndividualEnrollment::COLLECTION_PATH,
            EnrollmentKind::Group => EnrollmentGroup::COLLECTION_PATH,
        }
    }

    fn path(self, id: &str) -> String {
        enrollment_path(self.prefix(), id)
    }
}

/// A client for one DPS instance, authenticated by a shared access policy's connection string.
#[derive(Debug, Clone)]
pub struct DpsClient {
    http: HubClient,
}

impl DpsClient {
    /// A client for the DPS instance named by `cs`; TLS trusts the system's roots plus the
    /// certificates in `extra_ca_pems`.
    pub fn new(
        cs: ConnectionString,
        extra_ca_pems: &[std::path::PathBuf],
    ) -> Result<DpsClient, ClientError> {
        Ok(DpsClient {
            http: HubClient::new(cs, extra_ca_pems)?.with_api_version(DPS_API_VERSION),
        })
    }

    /// [`DpsClient::new`], but every connection goes to `address` while TLS still checks the
    /// host name (see [`HubClient::connecting_to`]).
    pub fn connecting_to(
        cs: ConnectionString,
        extra_ca_pems: &[std::path::PathBuf],
        address: std::net::SocketAddr,
    ) -> Result<DpsClient, ClientError> {
        Ok(DpsClient {
            http: HubClient::connecting_to(cs, extra_ca_pems, address)?
                .with_api_version(DPS_API_VERSION),
        })
    }

    /// The same client authenticating with `Authorization: Bearer {token}` (see
    /// [`HubClient::with_bearer_token`]).
    pub fn with_bearer_token(self, token: impl Into<String>) -> DpsClient {
        DpsClient {
            http: self.http.with_bearer_token(token),
        }
    }

    /// The service's `HostName` as given in the connection string (may carry `:port`).
    pub fn host_name(&self) -> &str {
        self.http.host_name()
    }

    /// The signed HTTPS client underneath (DPS's api-version).
    pub(crate) fn http(&self) -> &HubClient {
        &self.http
    }

    /// `https://{host}{path}?api-version=2021-10-01[&…]`.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        self.http.url(path, query)
    }

    /// The instance's CA certificates (`/dps/certificates`, ironhub's management call; in
    /// Azure they are an ARM resource).
    pub fn certificates(&self) -> Certificates<'_> {
        Certificates {
            client: &self.http,
            prefix: "/dps/certificates",
        }
    }

    /// One signed request with a JSON body (or none) and `If-Match` sent as given (`*` or an
    /// etag, as az sends it); the whole answer on success.
    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        if_match: Option<&str>,
        mut headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<RawResponse, ClientError> {
        if let Some(tag) = if_match {
            headers.push((header::IF_MATCH, header_value(tag.trim())?));
        }
        let payload = match body {
            Some(v) => {
                headers.push((
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                ));
                Bytes::from(
                    serde_json::to_vec(v)
                        .map_err(|e| ClientError::InvalidRequest(e.to_string()))?,
                )
            }
            None => Bytes::new(),
        };
        self.http
            .request_raw(method, path, &[], headers, payload, REQUEST_TIMEOUT)
            .await
    }

    /// `GET /enrollments/{id}` or `/enrollmentGroups/{id}`: the record without its keys.
    pub async fn get_enrollment<E: EnrollmentRecord>(&self, id: &str) -> Result<E, ClientError> {
        self.call(
            Method::GET,
            &enrollment_path(E::COLLECTION_PATH, id),
            NO_BODY,
            None,
            Vec::new(),
        )
        .await?
        .json()
    }

    /// `PUT /enrollments/{id}` or `/enrollmentGroups/{id}`: without `if_match` it creates the
    /// record (an existing one is a 409); with `*` or an etag it replaces it.
    pub async fn put_enrollment<E: EnrollmentRecord>(
        &self,
        id: &str,
        body: &E,
        if_match: Option<&str>,
    ) -> Result<E, ClientError> {
        self.call(
            Method::PUT,
            &enrollment_path(E::COLLECTION_PATH, id),
            Some(body),
            if_match,
            Vec::new(),
        )
        .await?
        .json()
    }

    /// `DELETE /enrollments/{id}` or `/enrollmentGroups/{id}` with `If-Match` (`*` or an etag).
    pub async fn delete_enrollment(
        &self,
        kind: EnrollmentKind,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &kind.path(id),
            NO_BODY,
            if_match,
            Vec::new(),
        )
        .await
        .map(|_| ())
    }

    /// `POST …/{id}/attestationmechanism`: the attestation with its keys.
    pub async fn attestation_mechanism(
        &self,
        kind: EnrollmentKind,
        id: &str,
    ) -> Result<AttestationMechanism, ClientError> {
        let path = format!("{}/attestationmechanism", kind.path(id));
        self.call(Method::POST, &path, NO_BODY, None, Vec::new())
            .await?
            .json()
    }

    /// `POST /enrollments/query` or `/enrollmentGroups/query` with `SELECT *`, every page (or
    /// the first `top` records).
    pub async fn query_enrollments<E: EnrollmentRecord>(
        &self,
        top: Option<usize>,
    ) -> Result<Vec<E>, ClientError> {
        let spec = QuerySpecification {
            query: SELECT_ALL.to_owned(),
        };
        let path = format!("{}/query", E::COLLECTION_PATH);
        self.query(&path, Some(&spec), top).await
    }

    /// `GET /registrations/{id}`: a device's registration state.
    pub async fn get_registration(&self, id: &str) -> Result<DeviceRegistrationState, ClientError> {
        self.call(
            Method::GET,
            &registration_path(id),
            NO_BODY,
            None,
            Vec::new(),
        )
        .await?
        .json()
    }

    /// `DELETE /registrations/{id}` with `If-Match` (`*` or an etag).
    pub async fn delete_registration(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &registration_path(id),
            NO_BODY,
            if_match,
            Vec::new(),
        )
        .await
        .map(|_| ())
    }

    /// `POST /registrations/{groupId}/query` (no body, as az and the Python SDK send it): the
    /// registration states of an enrollment group's devices.
    pub async fn query_registrations(
        &self,
        group_id: &str,
        top: Option<usize>,
    ) -> Result<Vec<DeviceRegistrationState>, ClientError> {
        let path = format!("{}/query", registration_path(group_id));
        self.query(&path, None::<&QuerySpecification>, top).await
    }

    /// A query, paged (see [`HubClient::query_pages`]).
    async fn query<T: DeserializeOwned>(
        &self,
        path: &str,
        spec: Option<&QuerySpecification>,
        top: Option<usize>,
    ) -> Result<Vec<T>, ClientError> {
        self.http.query_pages(path, spec, top).await
    }

    /// `GET /dps/linkedHubs`: the linked hubs, their connection strings' keys masked.
    pub async fn list_linked_hubs(&self) -> Result<Vec<LinkedHubView>, ClientError> {
        /// `{"value": […]}`, or the bare list.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Answer {
            List(LinkedHubList),
            Bare(Vec<LinkedHubView>),
        }
        let response = self
            .call(Method::GET, LINKED_HUBS, NO_BODY, None, Vec::new())
            .await?;
        Ok(match response.json()? {
            Answer::List(list) => list.value,
            Answer::Bare(hubs) => hubs,
        })
    }

    /// `GET /dps/linkedHubs/{name}` (the name is the hub's host name).
    pub async fn get_linked_hub(&self, name: &str) -> Result<LinkedHubView, ClientError> {
        self.call(
            Method::GET,
            &linked_hub_path(name),
            NO_BODY,
            None,
            Vec::new(),
        )
        .await?
        .json()
    }

    /// `PUT /dps/linkedHubs/{name}`: links the hub, or (with `if_match`) updates the link; an
    /// update without `connectionString` keeps the link's own.
    pub async fn put_linked_hub(
        &self,
        name: &str,
        body: &LinkedHubSpec,
        if_match: Option<&str>,
    ) -> Result<LinkedHubView, ClientError> {
        self.call(
            Method::PUT,
            &linked_hub_path(name),
            Some(body),
            if_match,
            Vec::new(),
        )
        .await?
        .json()
    }

    /// `DELETE /dps/linkedHubs/{name}`, with `If-Match` when given.
    pub async fn delete_linked_hub(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &linked_hub_path(name),
            NO_BODY,
            if_match,
            Vec::new(),
        )
        .await
        .map(|_| ())
    }
}

const LINKED_HUBS: &str = "/dps/linkedHubs";

fn enrollment_path(prefix: &str, id: &str) -> String {
    format!("{prefix}/{}", url_encode(id))
}

fn registration_path(id: &str) -> String {
    format!("/registrations/{}", url_encode(id))
}

fn linked_hub_path(name: &str) -> String {
    format!("{LINKED_HUBS}/{}", url_encode(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleQ==";

    #[tokio::test]
    async fn dps_urls_carry_the_dps_api_version() {
        let cs = ConnectionString::parse(&format!(
            "HostName=mydps.example:8443;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={KEY}"
        ))
        .unwrap();
        let c = DpsClient::new(cs, &[]).unwrap();
        assert_eq!(c.host_name(), "mydps.example:8443");
        assert_eq!(
            c.url(&EnrollmentKind::Group.path("g 1"), &[]),
            "https://mydps.example:8443/enrollmentGroups/g%201?api-version=2021-10-01"
        );
        assert_eq!(
            c.url(&registration_path("r1"), &[]),
            "https://mydps.example:8443/registrations/r1?api-version=2021-10-01"
        );
        assert_eq!(
            c.certificates().path("ca"),
            "/dps/certificates/ca",
            "DPS certificates live under /dps"
        );
    }
}
