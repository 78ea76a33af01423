//! Queries and bulk operations on enrollments (Azure REST API reference, Device Provisioning
//! Service: "Individual Enrollment - Query", "Individual Enrollment - Run Bulk Operation").

use serde::{Deserialize, Serialize};

use super::{EnrollmentGroup, IndividualEnrollment};

/// `POST …/query` body: `{"query": "SELECT *"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuerySpecification {
    #[serde(default)]
    pub query: String,
}

/// How a bulk operation applies each item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BulkMode {
    /// Only new records (409 for an existing one).
    #[serde(rename = "create", alias = "Create")]
    Create,
    /// Create or replace, whatever the etag.
    #[serde(rename = "update", alias = "Update")]
    Update,
    /// Replace an existing record whose etag is the item's (412 otherwise).
    #[serde(
        rename = "updateIfMatchETag",
        alias = "UpdateIfMatchETag",
        alias = "updateIfMatchEtag"
    )]
    UpdateIfMatchEtag,
    /// Delete an existing record (conditioned on the item's etag when it has one).
    #[serde(rename = "delete", alias = "Delete")]
    Delete,
}

/// `POST /enrollments`: up to 10 individual enrollments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperation {
    pub mode: BulkMode,
    #[serde(default)]
    pub enrollments: Vec<IndividualEnrollment>,
}

/// `POST /enrollmentGroups`: up to 10 enrollment groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentGroupOperation {
    pub mode: BulkMode,
    #[serde(default)]
    pub enrollment_groups: Vec<EnrollmentGroup>,
}

/// One failed item of a bulk operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
    pub error_code: u32,
    pub error_status: String,
}

/// The result of a bulk operation. ironhub applies all items or none (see `DESIGN.md`), so
/// `errors` lists every item that kept the batch from being applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationResult {
    pub is_successful: bool,
    pub errors: Vec<BulkEnrollmentOperationError>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bulk_shapes() {
        let op: BulkEnrollmentOperation = serde_json::from_value(json!({
            "mode": "updateIfMatchETag",
            "enrollments": [{ "registrationId": "a", "attestation": { "type": "symmetricKey" } }]
        }))
        .unwrap();
        assert_eq!(op.mode, BulkMode::UpdateIfMatchEtag);
        let result = BulkEnrollmentOperationResult {
            is_successful: false,
            errors: vec![BulkEnrollmentOperationError {
                registration_id: Some("a".into()),
                enrollment_group_id: None,
                error_code: 409_001,
                error_status: "exists".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(result).unwrap(),
            json!({ "isSuccessful": false, "errors": [
                { "registrationId": "a", "errorCode": 409001, "errorStatus": "exists" }
            ]})
        );
    }
}
