//! The IoT Hub service REST API: the device registry and its statistics, twins and methods.
//! Cloud-to-device messaging and the HTTPS device API (`c2d_api`), the event reader
//! (`events_api`) and CA certificates (`certificates_api`) are merged in from their modules.

use axum::Router;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ironhub_auth::Rights;
use ironhub_hub::model::{DeviceSpec, ExportImportDevice, device_view};
use ironhub_hub::{Hub, HubError};
use ironhub_store::DeviceRecord;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::extract::QueryArgs;
use crate::{ApiError, MAX_BODY_BYTES};

/// The routes of the hub's service API (the WebSocket endpoint, the fallbacks and the
/// api-version check are added by [`crate::router`]).
pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/devices", get(list_devices).post(bulk))
        .route("/devices/", get(list_devices).post(bulk))
        .route("/devices/keys/regenerate", post(regenerate_keys))
        .route(
            "/devices/{id}",
            get(get_device).put(put_device).delete(delete_device),
        )
        .route(
            "/twins/{id}",
            get(get_twin).patch(patch_twin).put(replace_twin),
        )
        .route("/twins/{id}/methods", post(invoke_method))
        .route("/statistics/devices", get(registry_statistics))
        .route("/statistics/service", get(service_statistics))
        .merge(crate::c2d_api::routes())
        .merge(crate::digital_twin_api::routes())
        .merge(crate::file_upload_api::routes())
        .merge(crate::events_api::routes())
        .merge(crate::query_api::routes())
        .merge(crate::certificates_api::routes::<Hub>())
}

/// Accepts `api-version` values shaped like IoT Hub's (`2021-04-12`, `2020-05-31-preview`);
/// a request without one is served as the newest version.
pub(crate) async fn check_api_version(request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or("");
    for (k, v) in form_pairs(query) {
        if k == "api-version" && !valid_api_version(&v) {
            return ApiError::invalid_protocol_version(&v).into_response();
        }
    }
    next.run(request).await
}

fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        (decode(k), decode(v))
    })
}

fn valid_api_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && date >= "2016-01-01"
}

/// Serialises a JSON response body.
pub(crate) fn json_body(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::from(HubError::ServerError(e.to_string())).into_response(),
    }
}

/// `response` with a quoted `ETag` header.
pub(crate) fn with_etag(mut response: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// A device with its quoted `ETag` header.
fn device_response(device: &DeviceRecord) -> Response {
    let view = device_view(device);
    with_etag(json_body(&view), &view.etag)
}

/// The `{id}` of a device path, percent-decoded. A path that does not decode is a 400 in
/// IoT Hub's shape, like every other client mistake.
struct DeviceId(String);

impl<S: Send + Sync> FromRequestParts<S> for DeviceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| DeviceId(id))
            .map_err(|e| {
                HubError::ArgumentInvalid(format!("The device id in the path is not valid: {e}."))
                    .into()
            })
    }
}

pub(crate) fn authorize(hub: &Hub, headers: &HeaderMap, needed: Rights) -> Result<(), ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    hub.authorize_service(header, needed)?;
    Ok(())
}

/// IoT Hub lets ServiceConnect (the `service` policy) read twins, as well as RegistryRead.
pub(crate) fn authorize_twin_read(hub: &Hub, headers: &HeaderMap) -> Result<(), ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    hub.authorize_service_any(header, &[Rights::SERVICE_CONNECT, Rights::REGISTRY_READ])?;
    Ok(())
}

pub(crate) fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`]; errors are Azure-shaped.
pub(crate) async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = crate::read_body(body)
        .await
        .map_err(|_| ApiError::from(HubError::MessageTooLarge(MAX_BODY_BYTES)))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(HubError::ArgumentNull("The request has no body.".into()).into());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        HubError::ArgumentInvalid(format!(
            "The request body is not valid JSON for this operation: {e}."
        ))
        .into()
    })
}

async fn get_device(
    State(hub): State<Hub>,
    DeviceId(id): DeviceId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_READ)?;
    Ok(device_response(&hub.get_device(&id).await?))
}

async fn put_device(
    State(hub): State<Hub>,
    DeviceId(id): DeviceId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_WRITE)?;
    let spec: DeviceSpec = read_json(body).await?;
    let device = hub.put_device(&id, &spec, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, "device created or updated");
    Ok(device_response(&device))
}

async fn delete_device(
    State(hub): State<Hub>,
    DeviceId(id): DeviceId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_WRITE)?;
    hub.delete_device(&id, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, "device deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    top: Option<String>,
}

async fn list_devices(
    State(hub): State<Hub>,
    QueryArgs(query): QueryArgs<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_READ)?;
    let top = match query.top.as_deref() {
        None | Some("") => None,
        Some(t) => Some(t.parse::<usize>().map_err(|_| {
            HubError::ArgumentInvalid(format!("top must be a whole number, not '{t}'."))
        })?),
    };
    let devices = hub.list_devices(top).await?;
    let views: Vec<_> = devices.iter().map(device_view).collect();
    Ok(json_body(&views))
}

async fn bulk(
    State(hub): State<Hub>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_WRITE)?;
    let items: Vec<ExportImportDevice> = read_json(body).await?;
    let result = hub.bulk(&items).await?;
    let status = if result.is_successful {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    tracing::info!(target: "ServiceOperations", devices = items.len(), ok = result.is_successful, "bulk registry operation");
    Ok((status, json_body(&result)).into_response())
}

/// `POST /devices/keys/regenerate`: 200 when every device was re-keyed, 207 when some were,
/// 400 when none was (the statuses the Azure CLI's client accepts, each with the result).
async fn regenerate_keys(
    State(hub): State<Hub>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_WRITE)?;
    let request: ironhub_hub::keys::RegenerateRequest = read_json(body).await?;
    let result = hub.regenerate_keys(&request).await?;
    let status = match (result.rotated_keys.is_empty(), result.errors.is_empty()) {
        (_, true) => StatusCode::OK,
        (false, false) => StatusCode::MULTI_STATUS,
        (true, false) => StatusCode::BAD_REQUEST,
    };
    tracing::info!(target: "ServiceOperations", rotated = result.rotated_keys.len(), failed = result.errors.len(), "device keys regenerated");
    Ok((status, json_body(&result)).into_response())
}

async fn get_twin(
    State(hub): State<Hub>,
    DeviceId(id): DeviceId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_twin_read(&hub, &headers)?;
    Ok(twin_response(&hub.get_twin(&id).await?))
}

async fn patch_twin(
    State(hub): State<Hub>,
    DeviceId(id): DeviceId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    update_twin(hub, id, headers, body, false).await
}

async fn replace_twin(
    State(hub): State<Hub>,
    DeviceId(id): DeviceId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    update_twin(hub, id, headers, body, true).await
}

async fn update_twin(
    hub: Hub,
    id: String,
    headers: HeaderMap,
    body: Body,
    replace: bool,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::SERVICE_CONNECT)?;
    let doc: serde_json::Value = read_json(body).await?;
    let twin = hub
        .update_twin(&id, &doc, if_match(&headers), replace)
        .await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, replace, "twin updated");
    Ok(twin_response(&twin))
}

/// A twin with its quoted `ETag` header.
fn twin_response(twin: &ironhub_hub::model::Twin) -> Response {
    with_etag(json_body(twin), &twin.etag)
}

async fn invoke_method(
    State(hub): State<Hub>,
    DeviceId(id): DeviceId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::SERVICE_CONNECT)?;
    let request: ironhub_hub::methods::MethodRequest = read_json(body).await?;
    let name = request.method_name.clone().unwrap_or_default();
    let result = hub.invoke_method(&id, request).await;
    tracing::info!(target: "ServiceOperations", device_id = %id, method = %name, ok = result.is_ok(), "direct method");
    Ok(json_body(&result?))
}

async fn registry_statistics(
    State(hub): State<Hub>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::REGISTRY_READ)?;
    Ok(json_body(&hub.registry_statistics().await?))
}

async fn service_statistics(
    State(hub): State<Hub>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&hub, &headers, Rights::SERVICE_CONNECT)?;
    Ok(json_body(&hub.service_statistics().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for ok in ["2021-04-12", "2020-05-31-preview", "2018-06-30"] {
            assert!(valid_api_version(ok), "{ok}");
        }
        for bad in ["", "latest", "2021-4-12", "1999-01-01", "2021-04-12-beta"] {
            assert!(!valid_api_version(bad), "{bad}");
        }
    }

    #[test]
    fn query_decoding() {
        let pairs: Vec<_> = form_pairs("api-version=2021-04-12&top=%31%30&x").collect();
        assert_eq!(pairs[0], ("api-version".into(), "2021-04-12".into()));
        assert_eq!(pairs[1], ("top".into(), "10".into()));
        assert_eq!(pairs[2], ("x".into(), String::new()));
        let odd: Vec<_> = form_pairs("a=%2&b=%E2%82").collect();
        assert_eq!(odd[0].1, "%2");
    }
}
