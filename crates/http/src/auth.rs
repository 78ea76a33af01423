//! Authentication as extractors, so that no handler checks credentials by hand and every
//! route checks them before its body is read (a handler's body extractor comes last):
//! - [`ServiceAuth<N>`]: a service call, authorized by a shared access policy of the hub or of
//!   the DPS instance (the router's state) with the rights `N` names;
//! - [`DeviceAuth`]: the device of an HTTPS device API path, authenticated by its SAS token or
//!   its TLS client certificate chain.
//!
//! The domain decides (`Hub::authorize_service_any`, `Dps::authorize_service`,
//! `Hub::authenticate`); these only gather what the request presents and render the refusal in
//! the service's error shape (e.g. 401 `IotHubUnauthorizedAccess`).

use std::collections::HashMap;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use ironhub_auth::{Credentials, Rights};
use ironhub_hub::{DeviceLogin, DeviceSession, Hub};

use crate::error::ApiError;
use crate::extract::Segments;
use crate::listener::ConnectionInfo;
use crate::respond::header_str;
use crate::service::Service;

/// The rights a route needs: any one of [`Needs::ANY_OF`].
pub(crate) trait Needs: Send + Sync + 'static {
    const ANY_OF: &'static [Rights];
}

macro_rules! needs {
    ($($(#[$doc:meta])* $name:ident = [$($right:ident),+];)+) => {$(
        $(#[$doc])*
        pub(crate) struct $name;
        impl Needs for $name {
            const ANY_OF: &'static [Rights] = &[$(Rights::$right),+];
        }
    )+};
}

needs! {
    /// The hub's RegistryRead.
    RegistryRead = [REGISTRY_READ];
    /// The hub's RegistryWrite.
    RegistryWrite = [REGISTRY_WRITE];
    /// The hub's ServiceConnect.
    ServiceConnect = [SERVICE_CONNECT];
    /// Reading a twin: IoT Hub lets ServiceConnect (the `service` policy) do it, as well as
    /// RegistryRead.
    TwinRead = [SERVICE_CONNECT, REGISTRY_READ];
    /// DPS's EnrollmentRead.
    EnrollmentRead = [ENROLLMENT_READ];
    /// DPS's EnrollmentWrite.
    EnrollmentWrite = [ENROLLMENT_WRITE];
    /// DPS's RegistrationStatusRead.
    RegistrationStatusRead = [REGISTRATION_STATUS_READ];
    /// DPS's RegistrationStatusWrite.
    RegistrationStatusWrite = [REGISTRATION_STATUS_WRITE];
    /// DPS's ServiceConfig.
    ServiceConfig = [SERVICE_CONFIG];
}

/// A service call authorized with the rights `N` names, by the router's service.
pub(crate) struct ServiceAuth<N>(PhantomData<N>);

impl<S: Service, N: Needs> FromRequestParts<S> for ServiceAuth<N> {
    type Rejection = S::Error;

    async fn from_request_parts(parts: &mut Parts, service: &S) -> Result<Self, S::Error> {
        service.authorize(authorization(parts), N::ANY_OF)?;
        Ok(ServiceAuth(PhantomData))
    }
}

/// A request session (`Hub::device_request`) of the path's `{id}` device, authenticated by
/// the request's `Authorization` header or its TLS client certificate chain (the hub decides
/// which counts).
pub(crate) struct DeviceAuth(pub DeviceSession);

impl FromRequestParts<Hub> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, ApiError> {
        let Segments(ids) =
            Segments::<HashMap<String, String>>::from_request_parts(parts, hub).await?;
        let device_id = ids.get("id").map_or("", String::as_str);
        let chain = parts
            .extensions
            .get::<ConnectionInfo>()
            .map_or(&[][..], |c| c.client_certificates.as_slice());
        let login = DeviceLogin {
            device_id,
            credentials: Credentials::new(
                header_str(&parts.headers, header::AUTHORIZATION.as_str()),
                chain,
            ),
            ..DeviceLogin::default()
        };
        Ok(DeviceAuth(
            hub.device_request(hub.authenticate(&login).await?),
        ))
    }
}

/// The `Authorization` header, when it is text.
fn authorization(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
