//! Individual enrollments and enrollment groups: the list (a page of DPS's query at a time,
//! with its continuation token), the create form, an enrollment's page (its settings, keys
//! masked until asked, the edit form carrying the ETag it showed, deletion) and its
//! registration records. One set of handlers serves both kinds through [`Kind`].

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_dps::DpsError;
use ironhub_dps::enrollments::Enrollment;
use ironhub_dps::model::{
    DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment, QuerySpecification,
};
use maud::html;
use serde::Deserialize;

use super::access::{PostedDps, SignedDps};
use super::form::{self, EnrollmentForm, FieldError, FormKind};
use super::layout::{csrf, error_page, page, refused, status_of};
use crate::layout::{Notice, notice, secret, segment};

/// Enrollments a list page shows.
const PAGE_SIZE: usize = 50;

/// What the pages need to know of a kind of enrollment.
pub trait Kind: Enrollment {
    /// The list's path.
    const PATH: &'static str;
    /// The list's title.
    const TITLE: &'static str;
    /// How a page names one.
    const ONE: &'static str;
    /// The label of its id.
    const ID_LABEL: &'static str;
    /// Its id in the REST API's body.
    const ID_FIELD: &'static str;
    /// Where its X.509 certificates go in the body.
    const CERTIFICATES: &'static str;
    /// Whether it is an individual enrollment.
    const INDIVIDUAL: bool;
    /// The operations of reading, writing and deleting one, as the REST routes ask them.
    const READ: Operation;
    const WRITE: Operation;
    const DELETE: Operation;
}

impl Kind for IndividualEnrollment {
    const PATH: &'static str = "/console/dps/enrollments";
    const TITLE: &'static str = "Individual enrollments";
    const ONE: &'static str = "Enrollment";
    const ID_LABEL: &'static str = "Registration id";
    const ID_FIELD: &'static str = "registrationId";
    const CERTIFICATES: &'static str = "clientCertificates";
    const INDIVIDUAL: bool = true;
    const READ: Operation = Operation::EnrollmentRead;
    const WRITE: Operation = Operation::EnrollmentWrite;
    const DELETE: Operation = Operation::EnrollmentDelete;
}

impl Kind for EnrollmentGroup {
    const PATH: &'static str = "/console/dps/groups";
    const TITLE: &'static str = "Enrollment groups";
    const ONE: &'static str = "Enrollment group";
    const ID_LABEL: &'static str = "Group id";
    const ID_FIELD: &'static str = "enrollmentGroupId";
    const CERTIFICATES: &'static str = "signingCertificates";
    const INDIVIDUAL: bool = false;
    const READ: Operation = Operation::GroupRead;
    const WRITE: Operation = Operation::GroupWrite;
    const DELETE: Operation = Operation::GroupDelete;
}

fn item_path<E: Kind>(id: &str) -> String {
    format!("{}/{}", E::PATH, segment(id))
}

/// `?c=` (where a page starts) and `?keys=show`.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    c: String,
    #[serde(default)]
    keys: String,
}

/// `GET /console/dps/enrollments` and `/console/dps/groups`.
pub async fn list<E: Kind>(signed: SignedDps, Query(q): Query<PageQuery>) -> Response {
    render_list::<E>(&signed, &q.c, &form::blank(), None).await
}

async fn render_list<E: Kind>(
    signed: &SignedDps,
    continuation: &str,
    draft: &EnrollmentForm,
    error: Option<&FieldError>,
) -> Response {
    let spec = QuerySpecification {
        query: "SELECT *".into(),
    };
    let answer = match signed.may(E::READ).await {
        Ok(()) => {
            let c = Some(continuation).filter(|c| !c.is_empty());
            signed.dps.query::<E>(&spec, Some(PAGE_SIZE), c).await
        }
        Err(e) => Err(e),
    };
    let can_write = signed.can(E::WRITE).await;
    let kind = FormKind {
        id_label: E::ID_LABEL,
        editing: false,
        individual: E::INDIVIDUAL,
    };
    let body = html! {
        @match &answer {
            Err(e) => p.notice.error { (e.to_string()) },
            Ok(page) => {
                div.scroll { table #enrollments {
                    thead { tr { th { (E::ID_LABEL) } th { "Attestation" } th { "Status" } th { "Allocation" } th { "Updated" } } }
                    tbody { @for e in &page.items {
                        @let s = e.settings();
                        tr {
                            td { a href=(item_path::<E>(e.id())) { (e.id()) } }
                            td { (s.attestation.kind.as_str()) }
                            td { (if s.is_enabled() { "enabled" } else { "disabled" }) }
                            td { (form::policy_name(s.allocation_policy)) }
                            td { (s.last_updated_date_time_utc.map(|t| t.to_rfc3339()).unwrap_or_default()) }
                        }
                    } }
                } }
                @if page.items.is_empty() { p { "None yet." } }
                @if let Some(next) = &page.continuation {
                    p { a #next-page href={ (E::PATH) "?c=" (segment(next)) } { "Next page →" } }
                }
            }
        }
        @if can_write {
            section {
                h2 { "New " (E::ONE.to_lowercase()) }
                form #create-enrollment method="post" action=(E::PATH) {
                    (csrf(signed))
                    (form::fields(draft, &kind, error))
                    button type="submit" { "Create" }
                }
            }
        }
    };
    let status = error.map_or(StatusCode::OK, |e| status_of(&e.error));
    (status, page(signed, E::TITLE, body)).into_response()
}

/// `POST /console/dps/enrollments` and `/console/dps/groups`: creates one; a refusal is
/// shown beside its field and nothing is written.
pub async fn create<E: Kind>(PostedDps(signed, form): PostedDps<EnrollmentForm>) -> Response {
    let id = form.id.trim().to_owned();
    let result = save::<E>(&signed, &form, None).await;
    match result {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", kind = E::KIND, id = %id, policy = %signed.policy, "enrollment created from the console");
            Redirect::to(&item_path::<E>(&id)).into_response()
        }
        Err(e) => render_list::<E>(&signed, "", &without_keys(&form), Some(&e)).await,
    }
}

/// A form as it is shown again after a refusal: keys are not sent back to the browser.
fn without_keys(form: &EnrollmentForm) -> EnrollmentForm {
    let mut f = form.clone();
    f.clear_keys();
    f
}

/// Checks the form and writes its enrollment (`if_match`: the ETag an edit showed).
async fn save<E: Kind>(
    signed: &SignedDps,
    form: &EnrollmentForm,
    if_match: Option<&str>,
) -> Result<(), FieldError> {
    let general = |error| FieldError { field: "", error };
    signed.may(E::WRITE).await.map_err(general)?;
    let enrollment: E = form.enrollment(E::ID_FIELD, E::CERTIFICATES)?;
    signed
        .dps
        .create_or_update(enrollment.id(), enrollment.clone(), if_match)
        .await
        .map(|_| ())
        .map_err(general)
}

/// `GET /console/dps/enrollments/{id}` and `/console/dps/groups/{id}`.
pub async fn show<E: Kind>(
    signed: SignedDps,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let outcome = Outcome {
        reveal: q.keys == "show",
        continuation: q.c,
        ..Outcome::default()
    };
    render::<E>(&signed, &id, outcome).await
}

/// What a post leaves on an enrollment's page.
#[derive(Default)]
pub struct Outcome {
    pub status: Option<StatusCode>,
    pub notice: Option<Notice>,
    /// The edit form as posted, with its refusal.
    pub draft: Option<(EnrollmentForm, FieldError)>,
    /// Show the keys.
    pub reveal: bool,
    /// Where the group's registrations page starts.
    pub continuation: String,
    /// A derived device key: the registration id and the key, or a refusal beside the field.
    pub derived: Option<Result<(String, String), FieldError>>,
}

/// An enrollment's page.
pub async fn render<E: Kind>(signed: &SignedDps, id: &str, outcome: Outcome) -> Response {
    let dps = &signed.dps;
    let enrollment = match signed.may(E::READ).await {
        Ok(()) => dps.get::<E>(id).await,
        Err(e) => Err(e),
    };
    let e = match enrollment {
        Ok(e) => e,
        Err(e) => return error_page(signed, &e),
    };
    let path = item_path::<E>(e.id());
    let can_write = signed.can(E::WRITE).await;
    let can_delete = signed.can(E::DELETE).await;
    let can_keys = signed.can(Operation::AttestationMechanism).await;
    let can_registrations = signed.can(Operation::RegistrationRead).await;
    let can_delete_registration = signed.can(Operation::RegistrationDelete).await;
    let s = e.settings();
    let symmetric = s.attestation.symmetric_key.is_some();
    // Keys are fetched only when asked for, with the right the REST API asks for them.
    let keys = if outcome.reveal && symmetric && can_keys {
        dps.attestation_mechanism::<E>(e.id())
            .await
            .ok()
            .and_then(|m| m.symmetric_key)
    } else {
        None
    };
    let registrations = if !can_registrations {
        None
    } else if E::INDIVIDUAL {
        Some(
            dps.get_registration(e.id())
                .await
                .map(|r| (vec![r], None))
                .or_else(|err| match err {
                    DpsError::RegistrationNotFound(_) => Ok((Vec::new(), None)),
                    other => Err(other),
                }),
        )
    } else {
        let c = Some(outcome.continuation.as_str()).filter(|c| !c.is_empty());
        Some(
            dps.query_registrations(e.id(), Some(PAGE_SIZE), c)
                .await
                .map(|p| (p.items, p.continuation)),
        )
    };
    let kind = FormKind {
        id_label: E::ID_LABEL,
        editing: true,
        individual: E::INDIVIDUAL,
    };
    let (draft, draft_error) = match outcome.draft {
        Some((f, err)) => (f, Some(err)),
        None => (EnrollmentForm::of(&e), None),
    };
    let body = html! {
        (notice(outcome.notice.as_ref()))
        section #settings {
            h2 { "Settings" }
            (form::summary(s))
            @if symmetric {
                @let k = keys.as_ref();
                p { "Primary key: " (secret(k.and_then(|k| k.primary_key.as_deref()).unwrap_or(""), k.is_some())) }
                p { "Secondary key: " (secret(k.and_then(|k| k.secondary_key.as_deref()).unwrap_or(""), k.is_some())) }
                @if can_keys {
                    p { @if k.is_some() { a href=(path) { "Hide keys" } } @else { a #show-keys href={ (path) "?keys=show" } { "Show keys" } } }
                }
            }
            @if let Some(twin) = &s.initial_twin {
                details { summary { "Initial twin" } pre #initial-twin-json { (serde_json::to_string_pretty(twin).unwrap_or_default()) } }
            }
            @if can_delete {
                form.inline #delete-enrollment method="post" action={ (path) "/delete" } data-confirm={ "Delete " (E::ONE.to_lowercase()) " " (e.id()) "?" } {
                    (csrf(signed))
                    input type="hidden" name="etag" value=(s.etag.as_deref().unwrap_or(""));
                    button.danger type="submit" { "Delete" }
                }
            }
        }
        @if !E::INDIVIDUAL && can_keys && symmetric {
            (super::registrations::device_key_section(signed, &path, outcome.derived.as_ref()))
        }
        @if let Some(r) = &registrations {
            (super::registrations::section(signed, &path, r, can_delete_registration))
        }
        @if can_write {
            section {
                h2 { "Edit" }
                form #edit-enrollment method="post" action=(path) {
                    (csrf(signed))
                    (form::fields(&draft, &kind, draft_error.as_ref()))
                    button type="submit" { "Save" }
                }
            }
        }
    };
    let title = format!("{} {}", E::ONE, e.id());
    let status = outcome.status.unwrap_or(StatusCode::OK);
    (status, page(signed, &title, body)).into_response()
}

/// `POST /console/dps/enrollments/{id}` and `/console/dps/groups/{id}`: saves the edit form
/// on the condition of the ETag it showed.
pub async fn update<E: Kind>(
    Path(id): Path<String>,
    PostedDps(signed, mut form): PostedDps<EnrollmentForm>,
) -> Response {
    // The id is the page's, whatever the form says.
    form.id = id.clone();
    let if_match = Some(form.etag.clone()).filter(|t| !t.is_empty());
    let outcome = match save::<E>(&signed, &form, if_match.as_deref()).await {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", kind = E::KIND, id = %id, policy = %signed.policy, "enrollment updated from the console");
            Outcome {
                notice: Some(Notice::ok(format!(
                    "The {} is saved.",
                    E::ONE.to_lowercase()
                ))),
                ..Outcome::default()
            }
        }
        Err(e) => Outcome {
            status: Some(status_of(&e.error)),
            notice: Some(refused(&e.error)),
            draft: Some((without_keys(&form), e)),
            ..Outcome::default()
        },
    };
    render::<E>(&signed, &id, outcome).await
}

/// What the delete form posts: the ETag the page showed.
#[derive(Debug, Deserialize)]
pub struct Delete {
    #[serde(default)]
    etag: String,
}

/// `POST /console/dps/enrollments/{id}/delete` and `/console/dps/groups/{id}/delete`.
pub async fn delete<E: Kind>(
    Path(id): Path<String>,
    PostedDps(signed, form): PostedDps<Delete>,
) -> Response {
    let if_match = Some(form.etag.as_str()).filter(|t| !t.is_empty());
    let result = async {
        signed.may(E::DELETE).await?;
        signed.dps.delete::<E>(&id, if_match).await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", kind = E::KIND, id = %id, policy = %signed.policy, "enrollment deleted from the console");
            Redirect::to(E::PATH).into_response()
        }
        Err(e) => error_page(&signed, &e),
    }
}

/// The registration records a page lists, and the continuation of a group's.
pub type Registrations = Result<(Vec<DeviceRegistrationState>, Option<String>), DpsError>;
