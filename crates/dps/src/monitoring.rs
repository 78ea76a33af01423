//! What the provisioning service counts and logs for its operator: `AttestationAttempts`,
//! `RegistrationAttempts` and `DeviceAssignments` with the dimensions DPS's monitoring
//! reference lists, and the `DeviceOperations` and `ServiceOperations` resource logs.
//! The enrollment operations are wrapped once here around the domain's own
//! (`*_unobserved`). Records carry ids and outcomes, never a key, token or certificate.

use std::time::Instant;

use ironhub_observe::diag::{self, AzureError, Category, Record};
use ironhub_observe::metrics;
use ironhub_store::DpsCollection;

use crate::attestation::Attested;
use crate::device_api::{DeviceRequest, Transport};
use crate::enrollments::Enrollment;
use crate::model::{DeviceRegistrationState, QuerySpecification};
use crate::query::QueryPage;
use crate::{Dps, DpsError};

impl AzureError for DpsError {
    fn status(&self) -> u16 {
        DpsError::status(self)
    }

    fn code(&self) -> u32 {
        DpsError::code(self)
    }
}

/// Azure's `protocol` of a device request's transport.
fn protocol(transport: Transport) -> &'static str {
    match transport {
        Transport::Https => "Http",
        Transport::Mqtt => "Mqtt",
        Transport::Amqp => "Amqp",
    }
}

/// `properties.type` of an enrollment kind, as DPS's logs name it.
fn enrollment_type<E: Enrollment>() -> &'static str {
    match E::COLLECTION {
        DpsCollection::Enrollments => "IndividualEnrollment",
        _ => "EnrollmentGroup",
    }
}

impl Dps {
    /// This instance's name in metrics: its first host name.
    fn service_name(&self) -> &str {
        self.host_names.first().map_or("", String::as_str)
    }

    /// Attests a registering device (see `attest`), counted in `AttestationAttempts`; a
    /// `DeviceOperations` `AttestationAttempt`.
    pub(crate) async fn attest_counted(
        &self,
        request: &DeviceRequest<'_>,
    ) -> Result<Attested, DpsError> {
        let started = Instant::now();
        let result = self.attest(request).await;
        let status = if result.is_ok() { "Success" } else { "Failure" };
        let protocol = protocol(request.transport);
        metrics()
            .dps
            .attestation_attempt(self.service_name(), status, protocol);
        if diag::enabled(Category::DeviceOperations) {
            let record = Record::new(Category::DeviceOperations, "AttestationAttempt")
                .property("id", request.registration_id)
                .property("type", "Registration")
                .protocol(protocol)
                .since(started);
            diag::emit(record.outcome(&result));
        }
        result
    }

    /// A registration's end, counted in `RegistrationAttempts` (and `DeviceAssignments` when
    /// a hub was assigned); a `DeviceOperations` `RegistrationAttempt`.
    pub(crate) fn registration_outcome(
        &self,
        registration_id: &str,
        outcome: Result<&DeviceRegistrationState, &DpsError>,
    ) {
        let hub = match outcome {
            Ok(state) => state.assigned_hub.as_deref().unwrap_or_default(),
            Err(_) => "",
        };
        let status = if outcome.is_ok() {
            "Success"
        } else {
            "Failure"
        };
        let m = &metrics().dps;
        m.registration_attempt(self.service_name(), hub, status);
        if outcome.is_ok() {
            m.device_assignment(self.service_name(), hub);
        }
        if diag::enabled(Category::DeviceOperations) {
            let mut record = Record::new(Category::DeviceOperations, "RegistrationAttempt")
                .property("id", registration_id)
                .property("type", "Registration")
                .property("iotHubName", hub);
            if let Err(e) = outcome {
                record = record.failed(e.status(), e.code(), e);
            }
            diag::emit(record);
        }
    }

    /// `PUT /enrollments/{id}` or `/enrollmentGroups/{id}` (see
    /// `create_or_update_unobserved`); a `ServiceOperations` `Upsert`.
    pub async fn create_or_update<E: Enrollment>(
        &self,
        id: &str,
        body: E,
        if_match: Option<&str>,
    ) -> Result<E, DpsError> {
        let started = Instant::now();
        let result = self.create_or_update_unobserved(id, body, if_match).await;
        service_record::<E, _>("Upsert", id, started, &result);
        result
    }

    /// `GET /enrollments/{id}` or `/enrollmentGroups/{id}` (see `get_unobserved`); a
    /// `ServiceOperations` `Get`.
    pub async fn get<E: Enrollment>(&self, id: &str) -> Result<E, DpsError> {
        let started = Instant::now();
        let result = self.get_unobserved(id).await;
        service_record::<E, _>("Get", id, started, &result);
        result
    }

    /// `DELETE /enrollments/{id}` or `/enrollmentGroups/{id}` (see `delete_unobserved`); a
    /// `ServiceOperations` `Delete`.
    pub async fn delete<E: Enrollment>(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), DpsError> {
        let started = Instant::now();
        let result = self.delete_unobserved::<E>(id, if_match).await;
        service_record::<E, _>("Delete", id, started, &result);
        result
    }

    /// An enrollment query page (see `query_unobserved`); a `ServiceOperations` `Query`.
    pub async fn query<E: Enrollment>(
        &self,
        spec: &QuerySpecification,
        max_items: Option<usize>,
        continuation: Option<&str>,
    ) -> Result<QueryPage<E>, DpsError> {
        let started = Instant::now();
        let result = self.query_unobserved(spec, max_items, continuation).await;
        service_record::<E, _>("Query", "", started, &result);
        result
    }
}

/// A `ServiceOperations` record, when the category is on.
fn service_record<E: Enrollment, T>(
    operation: &'static str,
    id: &str,
    started: Instant,
    result: &Result<T, DpsError>,
) {
    if diag::enabled(Category::ServiceOperations) {
        let record = Record::new(Category::ServiceOperations, operation)
            .property("id", id)
            .property("type", enrollment_type::<E>())
            .since(started);
        diag::emit(record.outcome(result));
    }
}
