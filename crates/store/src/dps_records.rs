//! The plain data the store keeps for the Device Provisioning Service. The rules and the wire
//! shapes live in the `dps` domain crate: the store keeps each enrollment, group, registration
//! and linked hub as the domain's JSON document, keyed by its id, and assigns the etag.

use chrono::{DateTime, Utc};
use ironhub_auth::SharedAccessPolicy;
use serde::{Deserialize, Serialize};

/// Settings of the DPS instance, created at first start and never regenerated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DpsSettings {
    /// `0ne` followed by 8 upper-case hex digits; immutable (Azure docs, IoT Hub Device
    /// Provisioning Service (DPS) terminology, 'ID scope').
    pub id_scope: String,
    pub policies: Vec<SharedAccessPolicy>,
    pub created_time: DateTime<Utc>,
}

impl DpsSettings {
    /// The policy with this name (matched case-insensitively).
    pub fn policy(&self, name: &str) -> Option<&SharedAccessPolicy> {
        self.policies
            .iter()
            .find(|p| p.key_name.eq_ignore_ascii_case(name))
    }
}

/// The collections of DPS records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DpsCollection {
    /// Individual enrollments, keyed by registration id.
    Enrollments,
    /// Enrollment groups, keyed by enrollment group id.
    EnrollmentGroups,
    /// Device registration states, keyed by registration id, with the enrollment group (if
    /// any) as `group_id`.
    Registrations,
    /// Linked IoT hubs, keyed by host name.
    LinkedHubs,
    /// The latest registration operation of each device, keyed by registration id.
    Operations,
}

/// One DPS record. Ids keep the case they were written with; the store looks them up, orders
/// and compares them case-insensitively (ASCII), as DPS treats registration and group ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DpsRecord {
    pub id: String,
    /// For registrations: the enrollment group the device registered through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Assigned by the store on every write; opaque to everyone else.
    pub etag: String,
    /// The domain's document.
    pub doc: serde_json::Value,
}

/// One write in an atomic batch of writes to one collection.
#[derive(Debug, Clone)]
pub enum DpsWrite {
    /// Insert; fails with [`crate::WriteConflict::AlreadyExists`] if the id is taken (in any
    /// case).
    Create(DpsRecord),
    /// Replace an existing record; with `if_match`, only when its etag is that one (or `*`).
    /// The stored id keeps the case it was created with.
    Replace {
        record: DpsRecord,
        if_match: Option<String>,
    },
    /// Delete; with `if_match`, only when its etag is that one (or `*`).
    Delete {
        id: String,
        if_match: Option<String>,
    },
}

impl DpsWrite {
    /// The id this write is about.
    pub fn id(&self) -> &str {
        match self {
            DpsWrite::Create(r) | DpsWrite::Replace { record: r, .. } => &r.id,
            DpsWrite::Delete { id, .. } => id,
        }
    }
}

/// The outcome of an atomic batch of DPS writes: every record as stored (`None` for deletes),
/// or, when any write failed, nothing written and the reason for each write that failed.
pub type DpsBatchResult = crate::Result<Vec<Option<DpsRecord>>, Vec<(usize, crate::WriteConflict)>>;

/// What [`crate::DpsStore::dps_begin_registration`] wrote and found.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationBegun {
    /// The device's operation, as stored.
    pub operation: DpsRecord,
    /// The device's registration record: the claim, or the record it already had.
    pub registration: DpsRecord,
    /// Whether `registration` is the claim this call created.
    pub claimed: bool,
}

/// Which half of [`crate::DpsStore::dps_write_with_device`] could not be applied (nothing was
/// written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JointConflict {
    /// The device's write, as [`crate::RegistryStore::write_devices`] would refuse it.
    Device(crate::WriteConflict),
    /// The DPS record's write, as [`crate::DpsStore::dps_write`] would refuse it.
    Dps(crate::WriteConflict),
}

/// The outcome of [`crate::DpsStore::dps_write_with_device`]: the device and the DPS record as
/// stored (`None` for a delete), or why nothing was written.
pub type JointResult =
    crate::Result<(Option<crate::DeviceRecord>, Option<DpsRecord>), JointConflict>;
