//! Shared setup for the DPS domain tests: a DPS instance on a fresh SQLite store.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use chrono::Utc;
use ironhub_auth::{Rights, SharedAccessPolicy};
use ironhub_dps::model::LinkedHub;
use ironhub_dps::{Dps, default_dps_policies};
use ironhub_embedded::SqliteStore;
use ironhub_store::{DpsSettings, Store};

/// The key of the vectors in `docs/protocol/sas-tokens.md`, "Test vectors".
pub const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleQ==";
/// The expiry of those vectors.
pub const SE: u64 = 1_795_310_676;
/// The ID scope of those vectors.
pub const SCOPE: &str = "0ne00000000";
pub const DPS_HOST: &str = "mydps.azure-devices-provisioning.net";

pub fn linked_hub(name: &str) -> LinkedHub {
    LinkedHub {
        name: name.into(),
        connection_string: format!(
            "HostName={name};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        ),
        allocation_weight: None,
        apply_allocation_policy: None,
        location: None,
        etag: None,
    }
}

pub struct Setup {
    pub dps: Dps,
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

/// A DPS instance with the vectors' ID scope, the owner policy plus an `enrollmentread`
/// policy (keys = `KEY`), and the hubs `hub1.example` and `hub2.example` linked.
pub async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut policies = default_dps_policies();
    policies[0].primary_key = KEY.into();
    policies.push(SharedAccessPolicy {
        key_name: "enrollmentread".into(),
        primary_key: KEY.into(),
        secondary_key: KEY.into(),
        rights: Rights::ENROLLMENT_READ,
    });
    store
        .dps_settings_or_init(DpsSettings {
            id_scope: SCOPE.into(),
            policies,
            created_time: Utc::now(),
        })
        .await
        .unwrap();
    let dps = Dps::open(store.clone(), vec![DPS_HOST.into()], None)
        .await
        .unwrap();
    for hub in ["hub1.example", "hub2.example"] {
        dps.put_linked_hub(linked_hub(hub), None).await.unwrap();
    }
    Setup {
        dps,
        store,
        _dir: dir,
    }
}
