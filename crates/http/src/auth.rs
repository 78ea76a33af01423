//! Authentication as extractors, so that no handler checks credentials by hand and every
//! route checks them before its body is read (a handler's body extractor comes last):
//! - [`ServiceAuth<N>`]: a service call of the operation `N`, authorized by the hub or the DPS
//!   instance (the router's state): a shared access policy with the operation's rights, or a
//!   bearer token whose roles grant its data action;
//! - [`DeviceAuth`]: the device of an HTTPS device API path, authenticated by its SAS token or
//!   its TLS client certificate chain.
//!
//! The domain decides (`Hub::authorize_operation`, `Dps::authorize_operation`,
//! `Hub::authenticate`); these only gather what the request presents and render the refusal in
//! the service's error shape (e.g. 401 `IotHubUnauthorizedAccess`).

use std::collections::HashMap;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use ironhub_auth::Credentials;
use ironhub_auth::access::Operation;
use ironhub_hub::{DeviceLogin, DeviceSession, Hub};

use crate::error::ApiError;
use crate::extract::Segments;
use crate::listener::ConnectionInfo;
use crate::respond::header_str;
use crate::service::Service;

/// The operation a route performs; the domain knows what it takes
/// ([`Operation::rights`], [`Operation::data_action`]).
pub(crate) trait Needs: Send + Sync + 'static {
    const OP: Operation;
}

macro_rules! needs {
    ($($name:ident),+ $(,)?) => {$(
        #[doc = concat!("The service operation `", stringify!($name), "`.")]
        pub(crate) struct $name;
        impl Needs for $name {
            const OP: Operation = Operation::$name;
        }
    )+};
}

needs! {
    DeviceRead, DeviceWrite, DeviceDelete, TwinRead, TwinWrite, Query, RegistryStatistics,
    ServiceStatistics, MethodInvoke, C2dSend, C2dFeedback, C2dPurge, FileNotifications,
    DigitalTwinRead, DigitalTwinWrite, DigitalTwinInvoke, EventsRead, EventsWrite, RoutingRead,
    RoutingWrite, HubCertificatesRead, HubCertificatesWrite, EnrollmentRead, EnrollmentWrite,
    EnrollmentDelete, GroupRead, GroupWrite, GroupDelete, AttestationMechanism,
    RegistrationRead, RegistrationDelete, LinkedHubsRead, LinkedHubsWrite, DpsCertificatesRead,
    DpsCertificatesWrite, NetworkRulesRead, NetworkRulesWrite, DpsNetworkRulesRead,
    DpsNetworkRulesWrite,
}

/// A service call authorized for the operation `N`, by the router's service.
pub(crate) struct ServiceAuth<N>(PhantomData<N>);

impl<S: Service, N: Needs> FromRequestParts<S> for ServiceAuth<N> {
    type Rejection = S::Error;

    async fn from_request_parts(parts: &mut Parts, service: &S) -> Result<Self, S::Error> {
        let request = format!("{} on {}", parts.method, parts.uri.path());
        service
            .authorize(authorization(parts), N::OP, &request)
            .await?;
        Ok(ServiceAuth(PhantomData))
    }
}

/// A request session (`Hub::device_request`) of the path's `{id}` device, authenticated by
/// the request's `Authorization` header or its TLS client certificate chain (the hub decides
/// which counts).
pub(crate) struct DeviceAuth;

impl FromRequestParts<Hub> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, ApiError> {
        identity_request(parts, hub, false)
            .await
            .map(|_| DeviceAuth)
    }
}

/// [`DeviceAuth`] for the routes a module may call too (its telemetry): the module is the
/// path's `{mid}`, or the module a module-scoped token names on the device's path (as the
/// Node SDK's HTTP `ModuleClient` sends it).
pub(crate) struct IdentityAuth(pub DeviceSession);

impl FromRequestParts<Hub> for IdentityAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, ApiError> {
        identity_request(parts, hub, true).await.map(IdentityAuth)
    }
}

/// The request session of the path's device (or, when `modules`, module).
async fn identity_request(
    parts: &mut Parts,
    hub: &Hub,
    modules: bool,
) -> Result<DeviceSession, ApiError> {
    let Segments(ids) = Segments::<HashMap<String, String>>::from_request_parts(parts, hub).await?;
    let device_id = ids.get("id").map_or("", String::as_str);
    let token = header_str(&parts.headers, header::AUTHORIZATION.as_str());
    let module_id = match ids.get("mid") {
        Some(mid) if modules => Some(mid.clone()),
        _ if modules => {
            token.and_then(|t| ironhub_hub::edge_callers::module_of_token(device_id, t))
        }
        _ => None,
    };
    let chain = parts
        .extensions
        .get::<ConnectionInfo>()
        .map_or(&[][..], |c| c.client_certificates.as_slice());
    let login = DeviceLogin {
        device_id,
        module_id: module_id.as_deref(),
        credentials: Credentials::new(token, chain),
        ..DeviceLogin::default()
    };
    Ok(hub.device_request(hub.authenticate(&login).await?))
}

/// The `Authorization` header, when it is text.
fn authorization(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
