//! Who a console session acts as, written once for the hub's pages and the DPS pages: a
//! shared access policy with its key, or a bearer token of the service's OpenID Connect
//! issuer. Either way every check goes through the service's own authorization (the call its
//! REST API makes): a policy session signs a short-lived SAS token with its key, a bearer
//! session presents its token as `Authorization: Bearer …`, so the token's roles, audience and
//! `exp` are judged at every page and post exactly as on a REST call.

use std::future::Future;

use axum::http::{HeaderMap, header};
use ironhub_auth::access::{Caller, Operation, ServiceAccess};
use ironhub_auth::oidc::Identity;
use ironhub_auth::{SharedAccessPolicy, sas, unix_now};
use ironhub_dps::{Dps, DpsError};
use ironhub_hub::{Hub, HubError};

use crate::session::{self, Bearer, Session};

/// How long a token the console signs for one check lives, in seconds.
const TOKEN_SECS: u64 = 300;

/// A service the console signs in to: the hub or DPS.
pub trait Service: Clone + Send + Sync + 'static {
    /// A refusal in the service's own words.
    type Error: std::fmt::Display + Send;
    /// As refusals and logs name it ("hub", "DPS instance").
    const NAME: &'static str;
    /// Its session cookie.
    const COOKIE: &'static str;
    /// Its sign-in page.
    const SIGN_IN: &'static str;
    /// The operations any one of which a bearer token's roles must allow to sign in.
    const SIGN_IN_OPERATIONS: &'static [Operation];

    fn host_name(&self) -> &str;
    /// What its policy sessions' cookies are sealed for.
    fn sealed_for(&self) -> String;
    /// The policy of this name (case-insensitive).
    fn policy(&self, name: &str) -> Option<&SharedAccessPolicy>;
    /// The policy whose key seals bearer sessions: the owner policy (never regenerated).
    fn owner(&self) -> Option<&SharedAccessPolicy>;
    /// How the service accepts callers (policies, bearer tokens).
    fn access(&self) -> &ServiceAccess;
    /// The service's authorization of `operation` for an `Authorization` header, as for a REST
    /// call.
    fn authorize(
        &self,
        header: &str,
        operation: Operation,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// A refusal with `message`.
    fn unauthorized(message: String) -> Self::Error;
}

impl Service for Hub {
    type Error = HubError;
    const NAME: &'static str = "hub";
    const COOKIE: &'static str = session::COOKIE;
    const SIGN_IN: &'static str = "/console/signin";
    const SIGN_IN_OPERATIONS: &'static [Operation] = &[
        Operation::DeviceRead,
        Operation::TwinRead,
        Operation::RegistryStatistics,
        Operation::C2dSend,
        Operation::EventsRead,
    ];

    fn host_name(&self) -> &str {
        Hub::host_name(self)
    }
    fn sealed_for(&self) -> String {
        Hub::host_name(self).to_owned()
    }
    fn policy(&self, name: &str) -> Option<&SharedAccessPolicy> {
        self.settings().policy(name)
    }
    fn owner(&self) -> Option<&SharedAccessPolicy> {
        let settings = self.settings();
        settings
            .policy("iothubowner")
            .or_else(|| settings.policies.first())
    }
    fn access(&self) -> &ServiceAccess {
        self.service_access()
    }
    async fn authorize(&self, header: &str, operation: Operation) -> Result<(), HubError> {
        let request = format!("{operation:?} from the console");
        self.authorize_operation(Some(header), operation, &request)
            .await
    }
    fn unauthorized(message: String) -> HubError {
        HubError::Unauthorized(message)
    }
}

impl Service for Dps {
    type Error = DpsError;
    const NAME: &'static str = "DPS instance";
    const COOKIE: &'static str = session::DPS_COOKIE;
    const SIGN_IN: &'static str = "/console/dps/signin";
    const SIGN_IN_OPERATIONS: &'static [Operation] = &[
        Operation::EnrollmentRead,
        Operation::GroupRead,
        Operation::RegistrationRead,
        Operation::LinkedHubsRead,
    ];

    fn host_name(&self) -> &str {
        Dps::host_name(self)
    }
    fn sealed_for(&self) -> String {
        format!("dps:{}", Dps::host_name(self))
    }
    fn policy(&self, name: &str) -> Option<&SharedAccessPolicy> {
        self.settings().policy(name)
    }
    fn owner(&self) -> Option<&SharedAccessPolicy> {
        let settings = self.settings();
        settings
            .policy(ironhub_dps::OWNER_POLICY)
            .or_else(|| settings.policies.first())
    }
    fn access(&self) -> &ServiceAccess {
        self.service_access()
    }
    async fn authorize(&self, header: &str, operation: Operation) -> Result<(), DpsError> {
        let request = format!("{operation:?} from the console");
        self.authorize_operation(Some(header), operation, &request)
            .await
    }
    fn unauthorized(message: String) -> DpsError {
        DpsError::Unauthorized(message)
    }
}

/// Who a session acts as.
#[derive(Clone)]
pub enum Principal {
    /// A shared access policy (its name as the service spells it) and the key signed in with.
    Policy { name: String, key: String },
    /// A bearer token, with the name and roles it was verified with at sign-in (for display;
    /// every check reads the token again).
    Bearer(Bearer),
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and tokens are secrets: never in logs.
        match self {
            Principal::Policy { name, .. } => f
                .debug_struct("Policy")
                .field("name", name)
                .finish_non_exhaustive(),
            Principal::Bearer(bearer) => bearer.fmt(f),
        }
    }
}

impl Principal {
    /// The policy's name, or the token's principal (`upn`, `oid` or `sub`).
    pub fn name(&self) -> &str {
        match self {
            Principal::Policy { name, .. } | Principal::Bearer(Bearer { name, .. }) => name,
        }
    }

    /// Who is signed in, as the pages show it: the policy's name, or the token's principal
    /// with its roles.
    pub fn who(&self) -> String {
        match self {
            Principal::Policy { name, .. } => name.clone(),
            Principal::Bearer(Bearer { name, roles, .. }) if roles.is_empty() => name.clone(),
            Principal::Bearer(Bearer { name, roles, .. }) => {
                format!("{name} ({})", roles.join(", "))
            }
        }
    }

    /// The policy's connection string on `host` (it holds the key signed in with); none for a
    /// bearer token.
    pub fn connection_string(&self, host: &str) -> Option<String> {
        match self {
            Principal::Policy { name, key } => Some(format!(
                "HostName={host};SharedAccessKeyName={name};SharedAccessKey={key}"
            )),
            Principal::Bearer { .. } => None,
        }
    }

    /// Whether the principal may perform `operation` on `service`, decided as for a REST call.
    pub async fn may<S: Service>(&self, service: &S, operation: Operation) -> Result<(), S::Error> {
        let header = match self {
            Principal::Policy { name, key } => sas::generate(
                service.host_name(),
                key,
                unix_now() + TOKEN_SECS,
                Some(name),
            )
            .map_err(|e| S::unauthorized(format!("Unauthorized: {e}.")))?,
            Principal::Bearer(Bearer { token, .. }) => format!("Bearer {token}"),
        };
        service.authorize(&header, operation).await
    }
}

/// The session a request's cookie holds for `service`, if it is valid now.
pub fn open<S: Service>(headers: &HeaderMap, service: &S) -> Option<(Principal, Session)> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let value = session::named_from_header(cookies, S::COOKIE)?;
    let now = unix_now();
    if session::is_bearer(value) {
        let owner = service.owner()?;
        let (bearer, session) = session::open_bearer(value, owner, &service.sealed_for(), now)?;
        return Some((Principal::Bearer(bearer), session));
    }
    let (policy, key, session) = session::open(value, &service.sealed_for(), now, |name| {
        service.policy(name)
    })?;
    Some((
        Principal::Policy {
            name: policy.key_name.clone(),
            key: key.to_owned(),
        },
        session,
    ))
}

/// Signs in with a bearer `token`: verified by the service's own validator (the one its REST
/// API uses), and its roles must allow one of [`Service::SIGN_IN_OPERATIONS`]. The identity
/// it names, or the refusal to show beside the token field.
pub async fn verify_bearer<S: Service>(service: &S, token: &str) -> Result<Identity, String> {
    let header = format!("Bearer {token}");
    let identity = match service.access().caller(&header).await {
        Ok(Caller::Bearer(identity)) => identity,
        Ok(Caller::Sas(_)) => return Err("Paste the access token itself (a JWT).".into()),
        Err(e) => return Err(format!("Unauthorized: {e}.")),
    };
    for operation in S::SIGN_IN_OPERATIONS {
        if service.authorize(&header, *operation).await.is_ok() {
            return Ok(identity);
        }
    }
    Err(format!(
        "Unauthorized: {} has no role on this {} (a data reader or contributor role is needed).",
        identity.name,
        S::NAME
    ))
}
