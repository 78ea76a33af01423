//! Linking and unlinking hubs from the DPS overview: the form that links a hub by its
//! connection string (as `az iot dps linked-hub create --connection-string` does), the link
//! itself, and the removal of a link after a confirmation page (the overview's handlers post
//! to these and show the outcome). Both act through the DPS calls the service
//! API's `/dps/linkedHubs` uses, with LinkedHubsWrite (ServiceConfig).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ironhub_auth::access::Operation;
use ironhub_dps::DpsError;
use ironhub_dps::hubs::linked_hub_name;
use ironhub_dps::model::LinkedHub;
use maud::{Markup, html};
use serde::Deserialize;

use super::access::SignedDps;
use super::form::{FieldError, beside};
use super::layout::{csrf, error_page, page};
use crate::layout::segment;

/// What the link form posts.
#[derive(Debug, Default, Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    connection_string: String,
    #[serde(default)]
    allocation_weight: String,
    #[serde(default)]
    apply_allocation_policy: Option<String>,
    #[serde(default)]
    location: String,
}

/// The form that links a hub; after a refusal it keeps what was typed (but the connection
/// string, which holds a key) and shows the refusal beside its field.
pub fn add_form(signed: &SignedDps, draft: Option<(&LinkForm, &FieldError)>) -> Markup {
    let empty = LinkForm {
        apply_allocation_policy: Some("on".into()),
        ..LinkForm::default()
    };
    let (f, error) = match draft {
        Some((f, e)) => (f, Some(e)),
        None => (&empty, None),
    };
    let beside = |field: &str| beside(error, field);
    html! {
        h3 { "Link a hub" }
        form #link-hub-form method="post" action="/console/dps/linked-hubs" autocomplete="off" {
            (csrf(signed))
            label for="connection_string" { "Hub connection string (a policy with RegistryWrite and ServiceConnect, such as iothubowner)" }
            input #connection_string type="password" name="connection_string" required
                placeholder="HostName=…;SharedAccessKeyName=iothubowner;SharedAccessKey=…"
                aria-describedby="connection_string-error";
            (beside("connection_string"))
            label for="allocation_weight" { "Allocation weight (empty: 1)" }
            input #allocation_weight type="number" name="allocation_weight" min="0"
                value=(f.allocation_weight) aria-describedby="allocation_weight-error";
            (beside("allocation_weight"))
            label.check { input #apply_allocation_policy type="checkbox" name="apply_allocation_policy" checked[f.apply_allocation_policy.is_some()]; " Allocation policies may pick this hub" }
            label for="location" { "Location (informational)" }
            input #location type="text" name="location" value=(f.location);
            p { button type="submit" { "Link hub" } }
        }
    }
}

/// The weight a form gives: none when empty, refused unless a whole number.
pub fn parse_weight(text: &str) -> Result<Option<u32>, DpsError> {
    match text.trim() {
        "" => Ok(None),
        w => w.parse::<u32>().map(Some).map_err(|_| {
            DpsError::BadRequest(format!(
                "The allocation weight '{w}' is not a whole number of 0 or more."
            ))
        }),
    }
}

/// The field a refused link belongs beside: the weight's own refusals beside the weight,
/// everything else (the string, the hub's answer, a duplicate) beside the connection string.
fn field_of(e: &DpsError) -> &'static str {
    match e {
        DpsError::BadRequest(m) if m.contains("allocation weight") => "allocation_weight",
        DpsError::Unauthorized(_) => "",
        _ => "connection_string",
    }
}

/// Links a hub by its connection string, named by the string's host name; the text of the
/// outcome, or the refusal with the field it belongs beside (none for a refused right). A hub
/// that does not answer now is linked (DPS decides so, as for the REST call), and the text says
/// devices cannot be assigned to it until it answers.
pub async fn link(signed: &SignedDps, form: &LinkForm) -> Result<String, FieldError> {
    let linked = async {
        signed.may(Operation::LinkedHubsWrite).await?;
        let allocation_weight = parse_weight(&form.allocation_weight)?;
        let hub = LinkedHub {
            name: linked_hub_name(&form.connection_string)?,
            connection_string: form.connection_string.trim().to_owned(),
            allocation_weight,
            apply_allocation_policy: Some(form.apply_allocation_policy.is_some()),
            location: Some(form.location.trim().to_owned()).filter(|l| !l.is_empty()),
            etag: None,
        };
        signed.dps.put_linked_hub(hub, None).await
    }
    .await
    .map_err(|error| FieldError {
        field: field_of(&error),
        error,
    })?;
    let name = linked.name;
    tracing::info!(target: "ServiceOperations", hub = %name, policy = %signed.policy, "hub linked from the console");
    Ok(match signed.dps.latency_of(&name) {
        Some(_) => format!("The hub {name} is linked."),
        None => format!(
            "The hub {name} is linked, but it did not answer just now: devices cannot be \
             assigned to it until it does (the server's log says why)."
        ),
    })
}

/// `GET /console/dps/linked-hubs/{name}/delete`: asks to confirm the removal of a link.
pub async fn confirm(signed: SignedDps, Path(name): Path<String>) -> Response {
    let hub = async {
        signed.may(Operation::LinkedHubsWrite).await?;
        signed.dps.get_linked_hub(&name).await
    }
    .await;
    let hub = match hub {
        Ok(hub) => hub,
        Err(e) => return error_page(&signed, &e),
    };
    let body = html! {
        section {
            h2 { "Unlink " (hub.name) "?" }
            p { "The provisioning service will no longer assign devices to " b { (hub.name) } ". Devices already assigned to it stay there." }
            form #unlink-hub-form method="post" action={ "/console/dps/linked-hubs/" (segment(&hub.name)) "/delete" } {
                (csrf(&signed))
                input type="hidden" name="etag" value=(hub.etag.as_deref().unwrap_or(""));
                button.danger type="submit" { "Unlink " (hub.name) }
                " " a href="/console/dps" { "Cancel" }
            }
        }
    };
    (StatusCode::OK, page(&signed, "Unlink a hub", body)).into_response()
}

/// What the confirmation posts: the ETag of the link it showed.
#[derive(Debug, Deserialize)]
pub struct Unlink {
    #[serde(default)]
    etag: String,
}

/// Unlinks the hub `name`, on the condition of the ETag the confirmation showed.
pub async fn unlink(signed: &SignedDps, name: &str, form: &Unlink) -> Result<(), DpsError> {
    signed.may(Operation::LinkedHubsWrite).await?;
    let if_match = Some(form.etag.as_str()).filter(|t| !t.is_empty());
    signed.dps.delete_linked_hub(name, if_match).await?;
    tracing::info!(target: "ServiceOperations", hub = %name, policy = %signed.policy, "hub unlinked from the console");
    Ok(())
}
