//! The IoT Hub service REST API: the device registry and its statistics, twins and methods.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ironhub_hub::Hub;
use ironhub_hub::model::{DeviceSpec, ExportImportDevice, device_view};
use ironhub_store::DeviceRecord;

use crate::auth::{
    DeviceDelete, DeviceRead, DeviceWrite, RegistryStatistics, ServiceAuth, ServiceStatistics,
    TwinRead, TwinWrite,
};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::extract::{QueryArgs, Segments, TopQuery};
use crate::method_caller::MethodCaller;
use crate::respond::{if_match, json_body, with_etag};

/// The routes of the hub's registry, twin, method and statistics API.
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
}

/// A device with its quoted `ETag` header.
fn device_response(device: &DeviceRecord) -> Response {
    let view = device_view(device);
    with_etag(json_body(&view), &view.etag)
}

async fn get_device(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceRead>,
) -> Result<Response, ApiError> {
    Ok(device_response(&hub.get_device(&id).await?))
}

async fn put_device(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceWrite>,
    headers: HeaderMap,
    JsonBody(spec): JsonBody<DeviceSpec>,
) -> Result<Response, ApiError> {
    let device = hub.put_device(&id, &spec, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, "device created or updated");
    Ok(device_response(&device))
}

async fn delete_device(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<DeviceDelete>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    hub.delete_device(&id, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, "device deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_devices(
    State(hub): State<Hub>,
    QueryArgs(query): QueryArgs<TopQuery>,
    _: ServiceAuth<DeviceRead>,
) -> Result<Response, ApiError> {
    let top = query.top()?;
    let devices = hub.list_devices(top).await?;
    let views: Vec<_> = devices.iter().map(device_view).collect();
    Ok(json_body(&views))
}

async fn bulk(
    State(hub): State<Hub>,
    _: ServiceAuth<DeviceWrite>,
    JsonBody(items): JsonBody<Vec<ExportImportDevice>>,
) -> Result<Response, ApiError> {
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
    _: ServiceAuth<DeviceWrite>,
    JsonBody(request): JsonBody<ironhub_hub::keys::RegenerateRequest>,
) -> Result<Response, ApiError> {
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
    Segments(id): Segments<String>,
    _: ServiceAuth<TwinRead>,
) -> Result<Response, ApiError> {
    Ok(twin_response(&hub.get_twin(&id).await?))
}

async fn patch_twin(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<TwinWrite>,
    headers: HeaderMap,
    JsonBody(doc): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    update_twin(hub, id, &headers, doc, false).await
}

async fn replace_twin(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ServiceAuth<TwinWrite>,
    headers: HeaderMap,
    JsonBody(doc): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    update_twin(hub, id, &headers, doc, true).await
}

async fn update_twin(
    hub: Hub,
    id: String,
    headers: &HeaderMap,
    doc: serde_json::Value,
    replace: bool,
) -> Result<Response, ApiError> {
    let twin = hub
        .update_twin(&id, &doc, if_match(headers), replace)
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
    Segments(id): Segments<String>,
    _: MethodCaller,
    JsonBody(request): JsonBody<ironhub_hub::methods::MethodRequest>,
) -> Result<Response, ApiError> {
    let name = request.method_name.clone().unwrap_or_default();
    let result = hub.invoke_method(&id, request).await;
    tracing::info!(target: "ServiceOperations", device_id = %id, method = %name, ok = result.is_ok(), "direct method");
    Ok(json_body(&result?))
}

async fn registry_statistics(
    State(hub): State<Hub>,
    _: ServiceAuth<RegistryStatistics>,
) -> Result<Response, ApiError> {
    Ok(json_body(&hub.registry_statistics().await?))
}

async fn service_statistics(
    State(hub): State<Hub>,
    _: ServiceAuth<ServiceStatistics>,
) -> Result<Response, ApiError> {
    Ok(json_body(&hub.service_statistics().await?))
}
