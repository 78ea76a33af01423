//! The IoT Hub service REST API of module identities (`/devices/{id}/modules[/{mid}]`) and
//! their twins (`/twins/{id}/modules/{mid}`). An IoT Edge device manages its own modules with
//! its own credentials (`edge_auth`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ironhub_hub::Hub;
use ironhub_hub::model::ModuleSpec;
use ironhub_hub::modules::module_view;
use ironhub_store::ModuleRecord;

use crate::auth::{DeviceDelete, DeviceRead, DeviceWrite, ServiceAuth, TwinRead, TwinWrite};
use crate::body::JsonBody;
use crate::edge_auth::ModuleAdmin;
use crate::error::ApiError;
use crate::extract::Segments;
use crate::method_caller::MethodCaller;
use crate::respond::{if_match, json_body, with_etag};

/// The routes of module identities.
pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/devices/{id}/modules", get(list_modules))
        .route(
            "/devices/{id}/modules/{mid}",
            get(get_module).put(put_module).delete(delete_module),
        )
        .route(
            "/twins/{id}/modules/{mid}",
            get(get_twin).patch(patch_twin).put(replace_twin),
        )
        .route("/twins/{id}/modules/{mid}/methods", post(invoke_method))
}

/// A module with its quoted `ETag` header.
fn module_response(module: &ModuleRecord) -> Response {
    let view = module_view(module);
    with_etag(json_body(&view), &view.etag)
}

async fn list_modules(
    State(hub): State<Hub>,
    Segments(id): Segments<String>,
    _: ModuleAdmin<DeviceRead>,
) -> Result<Response, ApiError> {
    let modules = hub.list_modules(&id).await?;
    let views: Vec<_> = modules.iter().map(module_view).collect();
    Ok(json_body(&views))
}

async fn get_module(
    State(hub): State<Hub>,
    Segments((id, mid)): Segments<(String, String)>,
    _: ModuleAdmin<DeviceRead>,
) -> Result<Response, ApiError> {
    Ok(module_response(&hub.get_module(&id, &mid).await?))
}

async fn put_module(
    State(hub): State<Hub>,
    Segments((id, mid)): Segments<(String, String)>,
    _: ModuleAdmin<DeviceWrite>,
    headers: HeaderMap,
    JsonBody(spec): JsonBody<ModuleSpec>,
) -> Result<Response, ApiError> {
    let module = hub.put_module(&id, &mid, &spec, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, module_id = %mid, "module created or updated");
    Ok(module_response(&module))
}

async fn delete_module(
    State(hub): State<Hub>,
    Segments((id, mid)): Segments<(String, String)>,
    _: ModuleAdmin<DeviceDelete>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    hub.delete_module(&id, &mid, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, module_id = %mid, "module deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_twin(
    State(hub): State<Hub>,
    Segments((id, mid)): Segments<(String, String)>,
    _: ServiceAuth<TwinRead>,
) -> Result<Response, ApiError> {
    let twin = hub.get_module_twin(&id, &mid).await?;
    Ok(with_etag(json_body(&twin), &twin.etag))
}

async fn patch_twin(
    State(hub): State<Hub>,
    Segments((id, mid)): Segments<(String, String)>,
    _: ServiceAuth<TwinWrite>,
    headers: HeaderMap,
    JsonBody(doc): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    update_twin(hub, id, mid, &headers, doc, false).await
}

async fn replace_twin(
    State(hub): State<Hub>,
    Segments((id, mid)): Segments<(String, String)>,
    _: ServiceAuth<TwinWrite>,
    headers: HeaderMap,
    JsonBody(doc): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    update_twin(hub, id, mid, &headers, doc, true).await
}

async fn update_twin(
    hub: Hub,
    id: String,
    mid: String,
    headers: &HeaderMap,
    doc: serde_json::Value,
    replace: bool,
) -> Result<Response, ApiError> {
    let twin = hub
        .update_module_twin(&id, &mid, &doc, if_match(headers), replace)
        .await?;
    tracing::info!(target: "ServiceOperations", device_id = %id, module_id = %mid, replace, "module twin updated");
    Ok(with_etag(json_body(&twin), &twin.etag))
}

async fn invoke_method(
    State(hub): State<Hub>,
    Segments((id, mid)): Segments<(String, String)>,
    _: MethodCaller,
    JsonBody(request): JsonBody<ironhub_hub::methods::MethodRequest>,
) -> Result<Response, ApiError> {
    let name = request.method_name.clone().unwrap_or_default();
    let result = hub.invoke_module_method(&id, &mid, request).await;
    tracing::info!(target: "ServiceOperations", device_id = %id, module_id = %mid, method = %name, ok = result.is_ok(), "module direct method");
    Ok(json_body(&result?))
}
