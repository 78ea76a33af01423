//! Registration records (an individual enrollment's one, a group's page by page) with their
//! deletion, and a device's key derived from its group's key for a registration id (the
//! derivation is `ironhub_auth::derive_device_key`, the one DPS checks devices with).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_dps::DpsError;
use ironhub_dps::model::EnrollmentGroup;
use ironhub_dps::rules::validate_registration_id;
use maud::{Markup, html};
use serde::Deserialize;

use super::access::{PostedDps, SignedDps};
use super::enrollments::{Outcome, Registrations, render};
use super::form::FieldError;
use super::layout::{csrf, error_page, status_of};
use crate::layout::segment;

/// The registrations section of an enrollment's page at `path`.
pub fn section(
    signed: &SignedDps,
    path: &str,
    registrations: &Registrations,
    can_delete: bool,
) -> Markup {
    html! {
        section #registrations-section {
            h2 { "Registrations" }
            @match registrations {
                Err(e) => p.notice.error { (e.to_string()) },
                Ok((list, _)) if list.is_empty() => p { "No device has registered yet." },
                Ok((list, next)) => {
                    div.scroll { table #registrations {
                        thead { tr { th { "Registration id" } th { "Status" } th { "Hub" } th { "Device id" } th { "Updated" } @if can_delete { th {} } } }
                        tbody { @for r in list {
                            tr {
                                td { (r.registration_id) }
                                td { (serde_json::to_value(r.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                                td { (r.assigned_hub.as_deref().unwrap_or("—")) }
                                td { (r.device_id.as_deref().unwrap_or("—")) }
                                td { (r.last_updated_date_time_utc.map(|t| t.to_rfc3339()).unwrap_or_default()) }
                                @if can_delete {
                                    td {
                                        form.inline.delete-registration method="post" action={ "/console/dps/registrations/" (segment(&r.registration_id)) "/delete" }
                                            data-confirm={ "Delete the registration " (r.registration_id) "?" } {
                                            (csrf(signed))
                                            input type="hidden" name="etag" value=(r.etag.as_deref().unwrap_or(""));
                                            input type="hidden" name="back" value=(path);
                                            button.danger type="submit" { "Delete" }
                                        }
                                    }
                                }
                            }
                        } }
                    } }
                    @if let Some(next) = next {
                        p { a #next-registrations href={ (path) "?c=" (segment(next)) } { "Next page →" } }
                    }
                }
            }
        }
    }
}

/// The form that derives a device's key from the group's key.
pub fn device_key_section(
    signed: &SignedDps,
    path: &str,
    derived: Option<&Result<(String, String), FieldError>>,
) -> Markup {
    let (asked, error) = match derived {
        Some(Err(e)) => (None, Some(e)),
        Some(Ok(pair)) => (Some(pair), None),
        None => (None, None),
    };
    html! {
        section #device-key-section {
            h2 { "Device key" }
            p { "A device of this group signs in with a key derived from the group's primary key and its registration id." }
            form #device-key-form method="post" action={ (path) "/device-key" } {
                (csrf(signed))
                label for="registration_id" { "Registration id" }
                input #registration_id type="text" name="registration_id" required
                    value=(asked.map(|(id, _)| id.as_str()).unwrap_or_default()) aria-describedby="registration_id-error";
                @if let Some(e) = error { span #registration_id-error.field-error role="alert" { (e.error.to_string()) } }
                button type="submit" { "Compute the device key" }
            }
            @if let Some((id, key)) = asked {
                p { "Device key of " b { (id) } ": " code.secret #device-key { (key) } }
            }
        }
    }
}

/// What the device key form posts.
#[derive(Debug, Deserialize)]
pub struct DeviceKey {
    #[serde(default)]
    registration_id: String,
}

/// `POST /console/dps/groups/{id}/device-key`: the device key of a registration id, derived
/// from the group's primary key (reading the group's keys takes the right the REST API's
/// attestation mechanism call takes).
pub async fn device_key(
    Path(id): Path<String>,
    PostedDps(signed, form): PostedDps<DeviceKey>,
) -> Response {
    let registration_id = form.registration_id.trim().to_owned();
    let derived = async {
        let general = |error| FieldError {
            field: "registration_id",
            error,
        };
        validate_registration_id(&registration_id).map_err(general)?;
        signed
            .may(Operation::AttestationMechanism)
            .await
            .map_err(general)?;
        let mechanism = signed
            .dps
            .attestation_mechanism::<EnrollmentGroup>(&id)
            .await
            .map_err(general)?;
        let group_key = mechanism
            .symmetric_key
            .and_then(|k| k.primary_key)
            .ok_or_else(|| {
                general(DpsError::BadRequest(
                    "The group has no symmetric key to derive from.".into(),
                ))
            })?;
        ironhub_auth::derive_device_key(&group_key, &registration_id)
            .map(|key| (registration_id.clone(), key))
            .map_err(|e| {
                general(DpsError::BadRequest(format!(
                    "The group key is not valid: {e}."
                )))
            })
    }
    .await;
    let status = match &derived {
        Err(e) => status_of(&e.error),
        Ok(_) => StatusCode::OK,
    };
    let outcome = Outcome {
        status: Some(status),
        derived: Some(derived),
        ..Outcome::default()
    };
    render::<EnrollmentGroup>(&signed, &id, outcome).await
}

/// What a registration's delete form posts: its ETag, and the page to go back to.
#[derive(Debug, Deserialize)]
pub struct Delete {
    #[serde(default)]
    etag: String,
    #[serde(default)]
    back: String,
}

/// `POST /console/dps/registrations/{id}/delete`: deletes a registration record (the device
/// may register again; its hub device stays).
pub async fn delete(
    Path(id): Path<String>,
    PostedDps(signed, form): PostedDps<Delete>,
) -> Response {
    let if_match = Some(form.etag.as_str()).filter(|t| !t.is_empty());
    let result = async {
        signed.may(Operation::RegistrationDelete).await?;
        signed.dps.delete_registration(&id, if_match).await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", registration_id = %id, policy = %signed.policy, "registration deleted from the console");
            // Back to the enrollment's page, never elsewhere.
            let back = if form.back.starts_with("/console/dps/") && !form.back.contains("//") {
                form.back.as_str()
            } else {
                "/console/dps"
            };
            Redirect::to(back).into_response()
        }
        Err(e) => error_page(&signed, &e),
    }
}
