//! Who may invoke a direct method (`POST /twins/{id}[/modules/{mid}]/methods`): a service with
//! ServiceConnect, as ever, or a module with its own SAS token, as the device SDKs'
//! `ModuleClient.invokeMethod` sends it (naming itself in `x-ms-edge-moduleId`). The domain
//! decides which targets a module may call (`Hub::authorize_module_method`).

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use ironhub_auth::Credentials;
use ironhub_hub::edge_callers::token_module;
use ironhub_hub::{DeviceLogin, Hub};

use crate::auth::{MethodInvoke, ServiceAuth};
use crate::error::ApiError;
use crate::extract::Segments;
use crate::respond::header_str;

/// The header a module's method call names the calling module in (`{deviceId}/{moduleId}`).
const EDGE_MODULE_ID: &str = "x-ms-edge-moduleid";

/// A direct method call by a service or by a module allowed to call the path's target.
pub(crate) struct MethodCaller;

impl FromRequestParts<Hub> for MethodCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, ApiError> {
        let refused = match ServiceAuth::<MethodInvoke>::from_request_parts(parts, hub).await {
            Ok(_) => return Ok(MethodCaller),
            Err(e) => e,
        };
        let token = header_str(&parts.headers, header::AUTHORIZATION.as_str()).map(str::to_owned);
        let Some((device_id, module_id)) = token.as_deref().and_then(token_module) else {
            return Err(refused);
        };
        // A caller that names itself must be the module its token is for.
        if let Some(named) = header_str(&parts.headers, EDGE_MODULE_ID)
            && named != format!("{device_id}/{module_id}")
        {
            return Err(refused);
        }
        let login = DeviceLogin {
            device_id: &device_id,
            module_id: Some(&module_id),
            credentials: Credentials::new(token.as_deref(), &[] as &[Vec<u8>]),
            ..DeviceLogin::default()
        };
        let who = hub.authenticate(&login).await?;
        let Segments(ids) =
            Segments::<HashMap<String, String>>::from_request_parts(parts, hub).await?;
        let target = ids.get("id").map_or("", String::as_str);
        hub.authorize_module_method(&who.identity, target, ids.get("mid").map(String::as_str))
            .await?;
        Ok(MethodCaller)
    }
}
