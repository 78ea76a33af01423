//! The IoT Hub domain, free of any transport: the device registry and its rules,
//! authorization, and (in later steps) twins, messaging and methods.
//!
//! Adapters (HTTP, MQTT) parse the wire, call [`Hub`], and render the answer in the wire's
//! own words; [`HubError`] carries IoT Hub's status and error code for that.

mod auth;
mod error;
pub mod model;
pub mod registry;

use std::sync::Arc;

use chrono::Utc;
use ironhub_store::{HubSettings, Store};

pub use auth::Principal;
pub use error::HubError;

/// One IoT Hub: its settings, the names it answers to, and the store that holds its state.
#[derive(Debug, Clone)]
pub struct Hub {
    store: Arc<dyn Store>,
    settings: Arc<HubSettings>,
    host_names: Arc<Vec<String>>,
}

impl Hub {
    /// Opens the hub kept in `store`, creating its settings (policies and keys) on first start.
    pub async fn open(store: Arc<dyn Store>, host_names: Vec<String>) -> Result<Self, HubError> {
        let init = HubSettings {
            policies: ironhub_auth::default_hub_policies(),
            created_time: Utc::now(),
        };
        let settings = store.hub_settings_or_init(init).await?;
        Ok(Hub {
            store,
            settings: Arc::new(settings),
            host_names: Arc::new(host_names),
        })
    }

    /// The hub's host name: the first configured name.
    pub fn host_name(&self) -> &str {
        self.host_names.first().map_or("localhost", String::as_str)
    }

    /// The hub's settings.
    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// The store behind the hub.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}
