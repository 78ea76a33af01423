//! What the `amqp_connection` target and its seed recorder (`examples/amqp_seeds.rs`) share:
//! an AMQP endpoint on a temporary embedded hub with DPS whose keys are fixed, so that the
//! recorded seeds' tokens are valid when the target replays them and the fuzzer starts from
//! connections that get past authentication.

use std::sync::Arc;

use ironhub_amqp::AmqpContext;
use ironhub_dps::Dps;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{Backends, Hub};
use ironhub_store::{HubSettings, RegistryStore};

/// The hub's host name, and the audience of its tokens.
pub const HOST: &str = "fuzzhub.example";
/// Every policy's and the device's key (32 bytes of `*`, base64).
pub const KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";
/// The device the seeds connect as.
pub const DEVICE: &str = "d1";
/// A token's expiry for the seeds: 2100-01-01, so that a recorded token stays valid.
pub const EXPIRY: u64 = 4_102_444_800;

/// The endpoint of a hub named [`HOST`] (policies and device [`DEVICE`] keyed [`KEY`]) and
/// a DPS beside it, its data in `dir`.
pub async fn endpoint(dir: &std::path::Path) -> AmqpContext {
    let store = Arc::new(SqliteStore::open(dir).expect("a temporary store"));
    let mut policies = ironhub_auth::default_hub_policies();
    for policy in &mut policies {
        policy.primary_key = KEY.into();
        policy.secondary_key = KEY.into();
    }
    store
        .hub_settings_or_init(HubSettings {
            policies,
            created_time: chrono::Utc::now(),
        })
        .await
        .expect("the hub's settings");
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir, 2).expect("a temporary event log")),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into()])
        .await
        .expect("the hub opens");
    let spec: DeviceSpec = serde_json::from_value(serde_json::json!({
        "authentication": {"type": "sas", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}},
    }))
    .expect("a device spec");
    hub.put_device(DEVICE, &spec, None)
        .await
        .expect("the device is created");
    let dps = Dps::open(store, vec!["dps.example".into()], None)
        .await
        .expect("the DPS opens");
    AmqpContext::new(hub, 5671).with_dps(dps)
}
