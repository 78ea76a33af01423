//! A device's modules: the list and the create form on the device's page, and a module's own
//! page with its identity, its twin (desired properties and tags editable on the condition of
//! the ETag shown, as for a device) and deletion. Controls follow the policy's rights, and
//! each post is authorized again with the operations the REST API's module routes ask.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_hub::HubError;
use ironhub_wire::hub::ModuleSpec;
use maud::{Markup, html};
use serde::Deserialize;

use crate::access::{NoFields, Posted, Signed};
use crate::device::{TwinForm, twin_section};
use crate::layout::{Notice, csrf, error_page, notice, page, segment};

/// The device page's section: its modules, and the create form when the policy may write.
pub async fn section(signed: &Signed, device_id: &str) -> Markup {
    let modules = match signed.may(Operation::DeviceRead).await {
        Ok(()) => signed.hub.list_modules(device_id).await,
        Err(e) => Err(e),
    };
    let can_create = signed.can(Operation::DeviceWrite).await;
    let path = format!("/console/devices/{}/modules", segment(device_id));
    html! {
        section #modules {
            h2 { "Modules" }
            @match &modules {
                Err(e) => p.notice.error { (e.to_string()) },
                Ok(list) if list.is_empty() => p { "No modules." },
                Ok(list) => ul #module-list {
                    @for m in list {
                        li { a href={ (path) "/" (segment(&m.module_id)) } { (m.module_id) }
                            " · " (format!("{:?}", m.connection_state)) }
                    }
                },
            }
            @if can_create {
                form #create-module method="post" action=(path) {
                    (csrf(signed))
                    label for="module_id" { "Module id" }
                    input #module_id type="text" name="module_id" required;
                    button type="submit" { "Create module (symmetric keys)" }
                }
            }
        }
    }
}

/// What the module create form posts.
#[derive(Debug, Deserialize)]
pub struct Create {
    #[serde(default)]
    module_id: String,
}

/// `POST /console/devices/{id}/modules`: creates a module with generated keys.
pub async fn create(Path(id): Path<String>, Posted(signed, form): Posted<Create>) -> Response {
    let mid = form.module_id.trim().to_owned();
    let result = async {
        signed.may(Operation::DeviceWrite).await?;
        let spec = ModuleSpec {
            module_id: Some(mid.clone()),
            device_id: Some(id.clone()),
            ..ModuleSpec::default()
        };
        signed.hub.put_module(&id, &mid, &spec, None).await
    }
    .await;
    match result {
        Ok(_) => {
            tracing::info!(target: "ServiceOperations", device_id = %id, module_id = %mid, policy = %signed.policy, "module created from the console");
            Redirect::to(&module_path(&id, &mid)).into_response()
        }
        Err(e) => error_page(&signed, &e),
    }
}

fn module_path(id: &str, mid: &str) -> String {
    format!("/console/devices/{}/modules/{}", segment(id), segment(mid))
}

/// `GET /console/devices/{id}/modules/{mid}`.
pub async fn show(signed: Signed, Path((id, mid)): Path<(String, String)>) -> Response {
    render(&signed, &id, &mid, None, None, None).await
}

async fn render(
    signed: &Signed,
    id: &str,
    mid: &str,
    status: Option<StatusCode>,
    message: Option<Notice>,
    draft: Option<(String, String)>,
) -> Response {
    let hub = &signed.hub;
    let module = match signed.may(Operation::DeviceRead).await {
        Ok(()) => hub.get_module(id, mid).await,
        Err(e) => Err(e),
    };
    let module = match module {
        Ok(m) => m,
        Err(e) => return error_page(signed, &e),
    };
    let twin = match signed.may(Operation::TwinRead).await {
        Ok(()) => hub.get_module_twin(id, mid).await.ok(),
        Err(_) => None,
    };
    let can_twin = signed.can(Operation::TwinWrite).await;
    let can_delete = signed.can(Operation::DeviceDelete).await;
    let path = module_path(id, mid);
    let body = html! {
        (notice(message.as_ref()))
        p { "Module of " a href={ "/console/devices/" (segment(id)) } { (id) } }
        section #identity {
            h2 { "Identity" }
            p { "Connection: " b #connection-state { (format!("{:?}", module.connection_state)) }
                " · authentication: " (format!("{:?}", module.authentication.kind)) }
            @if let Some(by) = &module.managed_by { p { "Managed by: " (by) } }
            @if can_delete {
                form.inline #delete-module method="post" action={ (path) "/delete" } data-confirm={ "Delete the module " (mid) "?" } {
                    (csrf(signed))
                    button.danger type="submit" { "Delete module" }
                }
            }
        }
        @if let Some(twin) = &twin {
            (twin_section(signed, "Module twin", &path, twin, can_twin, draft))
        }
    };
    let title = format!("{id} / {mid}");
    (status.unwrap_or(StatusCode::OK), page(signed, &title, body)).into_response()
}

/// `POST /console/devices/{id}/modules/{mid}/twin`: replaces the module twin's desired
/// properties and tags if its ETag is still the one the page showed.
pub async fn update_twin(
    Path((id, mid)): Path<(String, String)>,
    Posted(signed, form): Posted<TwinForm>,
) -> Response {
    let result = async {
        let doc = form.document(&signed).await?;
        signed
            .hub
            .update_module_twin(&id, &mid, &doc, Some(&form.etag), true)
            .await
    }
    .await;
    let draft = Some((form.desired.clone(), form.tags.clone()));
    match result {
        Ok(twin) => {
            tracing::info!(target: "ServiceOperations", device_id = %id, module_id = %mid, policy = %signed.policy, "module twin updated from the console");
            let saved = Notice::ok(format!("Twin saved (version {}).", twin.version));
            render(&signed, &id, &mid, None, Some(saved), None).await
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).ok();
            render(&signed, &id, &mid, status, Some(Notice::error(&e)), draft).await
        }
    }
}

/// `POST /console/devices/{id}/modules/{mid}/delete`.
pub async fn delete(
    Path((id, mid)): Path<(String, String)>,
    Posted(signed, NoFields {}): Posted<NoFields>,
) -> Response {
    let result: Result<(), HubError> = async {
        signed.may(Operation::DeviceDelete).await?;
        signed.hub.delete_module(&id, &mid, None).await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", device_id = %id, module_id = %mid, policy = %signed.policy, "module deleted from the console");
            Redirect::to(&format!("/console/devices/{}", segment(&id))).into_response()
        }
        Err(e) => error_page(&signed, &e),
    }
}
