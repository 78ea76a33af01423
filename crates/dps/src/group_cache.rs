//! The enrollment groups as parsed from their stored JSON, kept between requests: attestation
//! reads the list of groups on every register and poll request, and parsing each group's
//! document again was most of its cost. An entry is keyed by the group's id and stamped with
//! the etag of the record it was parsed from; the store gives every write a new etag, never
//! reused, so a stored record whose etag is the entry's has exactly the parsed bytes, whichever
//! node wrote it. Nothing is trusted without the store's record at hand: the list itself is
//! read from the store on each request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ironhub_store::DpsRecord;

use crate::model::EnrollmentGroup;
use crate::{DpsError, from_record};

/// How many parsed groups are kept; past it, the cache starts over (a DPS has at most a few
/// hundred groups: Azure docs, "Quotas and limits").
const CAPACITY: usize = 4096;

/// Parsed enrollment groups by lower-cased id, each with the etag it was parsed at.
#[derive(Debug, Default)]
pub(crate) struct GroupCache {
    parsed: Mutex<HashMap<String, (String, Arc<EnrollmentGroup>)>>,
}

impl GroupCache {
    /// The group a stored record holds: the one parsed before when the record has not
    /// changed since, else parsed now (and kept).
    pub(crate) fn group(&self, record: &DpsRecord) -> Result<Arc<EnrollmentGroup>, DpsError> {
        let key = record.id.to_ascii_lowercase();
        if let Some((etag, group)) = self.lock().get(&key)
            && *etag == record.etag
        {
            return Ok(group.clone());
        }
        let group: Arc<EnrollmentGroup> = Arc::new(from_record(record)?);
        let mut parsed = self.lock();
        if parsed.len() >= CAPACITY {
            parsed.clear();
        }
        parsed.insert(key, (record.etag.clone(), group.clone()));
        Ok(group)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Arc<EnrollmentGroup>)>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(etag: &str, iot_edge: bool) -> DpsRecord {
        DpsRecord {
            id: "Group-1".into(),
            group_id: None,
            etag: etag.into(),
            doc: json!({
                "enrollmentGroupId": "Group-1",
                "attestation": { "type": "symmetricKey" },
                "capabilities": { "iotEdge": iot_edge },
            }),
        }
    }

    #[test]
    fn a_group_is_parsed_again_only_when_its_etag_changes() {
        let cache = GroupCache::default();
        let first = cache.group(&record("1", false)).unwrap();
        let again = cache.group(&record("1", false)).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let changed = cache.group(&record("2", true)).unwrap();
        assert!(!Arc::ptr_eq(&first, &changed));
        assert!(changed.settings.iot_edge());
        assert!(!first.settings.iot_edge());
    }
}
