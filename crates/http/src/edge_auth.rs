//! Who may manage a device's module identities (`/devices/{id}/modules…`): a service with the
//! operation's rights, as for every registry call, or an IoT Edge device itself, logged in
//! with its own SAS token (device-scoped, or its `$edgeAgent` module's) for the path's device
//! only, as the IoT Edge runtime does. The domain decides (`Hub::authorize_edge_modules`).

use std::collections::HashMap;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use ironhub_auth::Credentials;
use ironhub_hub::configurations::edge::EDGE_AGENT;
use ironhub_hub::{DeviceLogin, Hub};

use crate::auth::{Needs, ServiceAuth};
use crate::error::ApiError;
use crate::extract::Segments;
use crate::respond::header_str;

/// A module registry call of operation `N`, by a service or by the path's own Edge device.
pub(crate) struct ModuleAdmin<N>(PhantomData<N>);

impl<N: Needs> FromRequestParts<Hub> for ModuleAdmin<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, ApiError> {
        let refused = match ServiceAuth::<N>::from_request_parts(parts, hub).await {
            Ok(_) => return Ok(ModuleAdmin(PhantomData)),
            Err(e) => e,
        };
        let token = header_str(&parts.headers, header::AUTHORIZATION.as_str()).map(str::to_owned);
        let token = token.as_deref();
        // Only a SAS token scoped to a device can be a device's own.
        if !token.is_some_and(|t| t.contains("%2Fdevices%2F") || t.contains("/devices/")) {
            return Err(refused);
        }
        let Segments(ids) =
            Segments::<HashMap<String, String>>::from_request_parts(parts, hub).await?;
        let device_id = ids.get("id").map_or("", String::as_str);
        for module_id in [None, Some(EDGE_AGENT)] {
            let login = DeviceLogin {
                device_id,
                module_id,
                credentials: Credentials::new(token, &[] as &[Vec<u8>]),
                ..DeviceLogin::default()
            };
            if let Ok(who) = hub.authenticate(&login).await {
                hub.authorize_edge_modules(&who.identity, device_id).await?;
                return Ok(ModuleAdmin(PhantomData));
            }
        }
        Err(refused)
    }
}
