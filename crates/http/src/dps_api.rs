//! The Device Provisioning Service's service REST API (api-version 2021-10-01, as
//! `azure-iot-deviceprovisioning` and npm `azure-iot-provisioning-service` call it;
//! `docs/protocol/dps-json.md` §3), and ironhub's management calls for linked hubs.
//!
//! - `PUT|GET|DELETE /enrollments/{id}`, `POST /enrollments/{id}/attestationmechanism`,
//!   `POST /enrollments/query`, `POST /enrollments` (bulk); the same under
//!   `/enrollmentGroups`. Rights: EnrollmentRead to read, EnrollmentWrite to change.
//! - `GET|DELETE /registrations/{id}`, `POST /registrations/{groupId}/query`. Rights:
//!   RegistrationStatusRead, RegistrationStatusWrite.
//! - `GET /dps/linkedHubs`, `PUT|GET|DELETE /dps/linkedHubs/{name}` with
//!   `{"connectionString", "allocationWeight", "applyAllocationPolicy", "location"}`: in Azure
//!   linked hubs are a property of the ARM resource (`az iot dps linked-hub`); ironhub serves
//!   them here, with ServiceConfig. CA certificates are `/dps/certificates` (see
//!   `certificates_api`).
//!
//! Paths are matched case-insensitively and with or without a trailing slash (Node's
//! `/enrollmentgroups/…` and `/enrollments/`), see `routes::normalize_path`. Creates and
//! updates answer 200, deletes 204, queries a JSON array with `x-ms-continuation` only when
//! more pages follow. Errors have DPS's body, `{"errorCode", "trackingId", "message",
//! "timestampUtc"}`, and an `x-ms-error-code` header.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ironhub_dps::enrollments::Enrollment;
use ironhub_dps::model::{
    BulkEnrollmentGroupOperation, BulkEnrollmentOperation, EnrollmentGroup, IndividualEnrollment,
    LinkedHub, LinkedHubList, LinkedHubSpec, LinkedHubView, QuerySpecification,
};
use ironhub_dps::query::QueryPage;
use ironhub_dps::{Dps, DpsError};
use serde::Serialize;

use crate::auth::{
    AttestationMechanism, EnrollmentDelete, EnrollmentRead, EnrollmentWrite, GroupDelete,
    GroupRead, GroupWrite, LinkedHubsRead, LinkedHubsWrite, Needs, RegistrationDelete,
    RegistrationRead, ServiceAuth,
};
use crate::body::{JsonBody, JsonOrEmpty};
use crate::error::DpsApiError;
use crate::extract::Segments;
use crate::respond::{if_match, json_body};

/// A JSON answer with the record's quoted etag as `ETag`.
fn with_etag<T: Serialize>(value: &T, etag: Option<&str>) -> Response {
    let mut response = json_body(value);
    if let Some(tag) = etag
        && let Ok(v) = HeaderValue::from_str(&format!("\"{tag}\""))
    {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `x-ms-max-item-count` and `x-ms-continuation` of a query request.
fn paging(headers: &HeaderMap) -> Result<(Option<usize>, Option<String>), DpsApiError> {
    crate::paging::paging(headers).map_err(|m| DpsError::BadRequest(m).into())
}

/// A page of a query (see [`crate::paging::page_response`]).
fn page_response<T: Serialize>(
    page: &QueryPage<T>,
    item_type: &'static str,
    max: usize,
) -> Response {
    crate::paging::page_response(&page.items, item_type, max, page.continuation.as_deref())
}

/// The service routes, answering for `dps`.
pub(crate) fn routes() -> Router<Dps> {
    Router::new()
        .merge(enrollment_routes::<IndividualEnrollment>("/enrollments"))
        .merge(enrollment_routes::<EnrollmentGroup>("/enrollmentGroups"))
        .route("/enrollments", post(bulk_enrollments))
        .route("/enrollmentGroups", post(bulk_groups))
        .route(
            "/registrations/{id}",
            get(get_registration).delete(delete_registration),
        )
        .route("/registrations/{id}/query", post(query_registrations))
        .route("/dps/linkedHubs", get(list_linked_hubs))
        .route(
            "/dps/linkedHubs/{name}",
            get(get_linked_hub)
                .put(put_linked_hub)
                .delete(delete_linked_hub),
        )
}

/// What the routes of one kind of enrollment need to know of it.
trait Kind: Enrollment {
    /// `x-ms-item-type` of a query.
    const ITEM_TYPE: &'static str;
    /// Reading (and querying) them.
    type Read: Needs;
    /// Creating or replacing one.
    type Write: Needs;
    /// Deleting one.
    type Delete: Needs;
}

impl Kind for IndividualEnrollment {
    const ITEM_TYPE: &'static str = "enrollment";
    type Read = EnrollmentRead;
    type Write = EnrollmentWrite;
    type Delete = EnrollmentDelete;
}

impl Kind for EnrollmentGroup {
    const ITEM_TYPE: &'static str = "enrollmentGroup";
    type Read = GroupRead;
    type Write = GroupWrite;
    type Delete = GroupDelete;
}

fn enrollment_routes<E: Kind>(prefix: &str) -> Router<Dps> {
    Router::new()
        .route(
            &format!("{prefix}/{{id}}"),
            get(get_enrollment::<E>)
                .put(put_enrollment::<E>)
                .delete(delete_enrollment::<E>),
        )
        .route(
            &format!("{prefix}/{{id}}/attestationmechanism"),
            post(attestation_mechanism::<E>),
        )
        .route(&format!("{prefix}/query"), post(query_enrollments::<E>))
}

async fn put_enrollment<E: Kind>(
    State(dps): State<Dps>,
    _: ServiceAuth<E::Write>,
    Segments(id): Segments<String>,
    headers: HeaderMap,
    JsonBody(enrollment): JsonBody<E>,
) -> Result<Response, DpsApiError> {
    let written = dps
        .create_or_update(&id, enrollment, if_match(&headers))
        .await?;
    tracing::info!(target: "ServiceOperations", kind = E::KIND, id = %id, "enrollment created or updated");
    Ok(with_etag(&written, written.settings().etag.as_deref()))
}

async fn get_enrollment<E: Kind>(
    State(dps): State<Dps>,
    _: ServiceAuth<E::Read>,
    Segments(id): Segments<String>,
) -> Result<Response, DpsApiError> {
    let e: E = dps.get(&id).await?;
    Ok(with_etag(&e, e.settings().etag.as_deref()))
}

async fn delete_enrollment<E: Kind>(
    State(dps): State<Dps>,
    _: ServiceAuth<E::Delete>,
    Segments(id): Segments<String>,
    headers: HeaderMap,
) -> Result<Response, DpsApiError> {
    dps.delete::<E>(&id, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", kind = E::KIND, id = %id, "enrollment deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn attestation_mechanism<E: Kind>(
    State(dps): State<Dps>,
    _: ServiceAuth<AttestationMechanism>,
    Segments(id): Segments<String>,
) -> Result<Response, DpsApiError> {
    // The mechanism carries the keys: reading it is a write-level right, as in DPS.
    Ok(json_body(&dps.attestation_mechanism::<E>(&id).await?))
}

async fn query_enrollments<E: Kind>(
    State(dps): State<Dps>,
    _: ServiceAuth<E::Read>,
    headers: HeaderMap,
    JsonOrEmpty(spec): JsonOrEmpty<QuerySpecification>,
) -> Result<Response, DpsApiError> {
    let spec = spec.unwrap_or_default();
    let (max, continuation) = paging(&headers)?;
    let page = dps.query::<E>(&spec, max, continuation.as_deref()).await?;
    Ok(page_response(
        &page,
        E::ITEM_TYPE,
        ironhub_dps::query::page_size(max),
    ))
}

async fn bulk_enrollments(
    State(dps): State<Dps>,
    _: ServiceAuth<EnrollmentWrite>,
    JsonBody(op): JsonBody<BulkEnrollmentOperation>,
) -> Result<Response, DpsApiError> {
    let result = dps.bulk(op.mode, &op.enrollments).await?;
    tracing::info!(target: "ServiceOperations", items = op.enrollments.len(), ok = result.is_successful, "bulk enrollment operation");
    Ok(json_body(&result))
}

async fn bulk_groups(
    State(dps): State<Dps>,
    _: ServiceAuth<GroupWrite>,
    JsonBody(op): JsonBody<BulkEnrollmentGroupOperation>,
) -> Result<Response, DpsApiError> {
    let result = dps.bulk(op.mode, &op.enrollment_groups).await?;
    tracing::info!(target: "ServiceOperations", items = op.enrollment_groups.len(), ok = result.is_successful, "bulk enrollment group operation");
    Ok(json_body(&result))
}

async fn get_registration(
    State(dps): State<Dps>,
    _: ServiceAuth<RegistrationRead>,
    Segments(id): Segments<String>,
) -> Result<Response, DpsApiError> {
    let state = dps.get_registration(&id).await?;
    Ok(with_etag(&state, state.etag.as_deref()))
}

async fn delete_registration(
    State(dps): State<Dps>,
    _: ServiceAuth<RegistrationDelete>,
    Segments(id): Segments<String>,
    headers: HeaderMap,
) -> Result<Response, DpsApiError> {
    dps.delete_registration(&id, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", registration_id = %id, "registration deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn query_registrations(
    State(dps): State<Dps>,
    _: ServiceAuth<RegistrationRead>,
    Segments(group): Segments<String>,
    headers: HeaderMap,
    // Python sends no body, Node a query specification: either is fine.
    JsonOrEmpty(_spec): JsonOrEmpty<QuerySpecification>,
) -> Result<Response, DpsApiError> {
    let (max, continuation) = paging(&headers)?;
    let page = dps
        .query_registrations(&group, max, continuation.as_deref())
        .await?;
    Ok(page_response(
        &page,
        "deviceRegistration",
        ironhub_dps::query::page_size(max),
    ))
}

/// A linked hub as the API shows it, with the latency last measured to it.
fn linked_hub_view(dps: &Dps, h: &LinkedHub) -> LinkedHubView {
    LinkedHubView {
        latency_ms: dps.latency_of(&h.name).map(|d| d.as_secs_f64() * 1000.0),
        ..LinkedHubView::from(h)
    }
}

async fn list_linked_hubs(
    State(dps): State<Dps>,
    _: ServiceAuth<LinkedHubsRead>,
) -> Result<Response, DpsApiError> {
    let value = dps
        .list_linked_hubs()
        .await?
        .iter()
        .map(|h| linked_hub_view(&dps, h))
        .collect();
    Ok(json_body(&LinkedHubList { value }))
}

async fn get_linked_hub(
    State(dps): State<Dps>,
    _: ServiceAuth<LinkedHubsRead>,
    Segments(name): Segments<String>,
) -> Result<Response, DpsApiError> {
    let hub = dps.get_linked_hub(&name).await?;
    Ok(with_etag(&linked_hub_view(&dps, &hub), hub.etag.as_deref()))
}

async fn put_linked_hub(
    State(dps): State<Dps>,
    _: ServiceAuth<LinkedHubsWrite>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<LinkedHubSpec>,
) -> Result<Response, DpsApiError> {
    let tag = if_match(&headers);
    // An update may leave the connection string out: the link keeps its own.
    let connection_string = match (b.connection_string, tag) {
        (Some(cs), _) => cs,
        (None, Some(_)) => dps.get_linked_hub(&name).await?.connection_string,
        (None, None) => {
            return Err(DpsError::BadRequest(
                "Linking a hub needs its connectionString (an iothubowner-level policy).".into(),
            )
            .into());
        }
    };
    let hub = dps
        .put_linked_hub(
            LinkedHub {
                name: name.clone(),
                connection_string,
                allocation_weight: b.allocation_weight,
                apply_allocation_policy: b.apply_allocation_policy,
                location: b.location,
                etag: None,
            },
            tag,
        )
        .await?;
    tracing::info!(target: "ServiceOperations", hub = %name, "linked hub created or updated");
    // With its round trip: absent when the hub did not answer the check just made.
    Ok(with_etag(&linked_hub_view(&dps, &hub), hub.etag.as_deref()))
}

async fn delete_linked_hub(
    State(dps): State<Dps>,
    _: ServiceAuth<LinkedHubsWrite>,
    Segments(name): Segments<String>,
    headers: HeaderMap,
) -> Result<Response, DpsApiError> {
    dps.delete_linked_hub(&name, if_match(&headers)).await?;
    tracing::info!(target: "ServiceOperations", hub = %name, "linked hub deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
