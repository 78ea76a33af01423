//! IoT Edge devices: the `$edgeAgent` and `$edgeHub` module identities IoT Hub gives every
//! device with `capabilities.iotEdge`, a deployment manifest applied to one device
//! (`POST /devices/{id}/applyConfigurationContent`, `az iot edge set-modules`), deployments
//! applied to the devices they target, and an Edge device's right to manage its own modules
//! with its own credentials.

use std::collections::BTreeMap;

use ironhub_store::{
    ConnectionState, DeviceRecord, ModuleRecord, ModuleWrite, TwinRecord, WriteConflict,
};
use serde_json::{Map, Value};

use super::apply::plan_edge;
use super::rules::Parsed;
use crate::model::{Configuration, ConfigurationContent};
use crate::registry::{build_authentication, new_generation_id};
use crate::twin::{empty_twin, replacement_patch};
use crate::{DeviceIdentity, Hub, HubError};

/// The system modules of every IoT Edge device.
pub const EDGE_AGENT: &str = "$edgeAgent";
pub const EDGE_HUB: &str = "$edgeHub";
/// Tries of a module twin's compare-and-swap write.
const TRIES: usize = 3;

impl Hub {
    /// Creates the device's `$edgeAgent` and `$edgeHub` modules if it is an Edge device and
    /// they are missing (idempotent: device creation calls it, and every configurations pass
    /// repairs a device whose creation stopped half way).
    pub(crate) async fn ensure_edge_modules(&self, device: &DeviceRecord) -> Result<(), HubError> {
        if !device.iot_edge {
            return Ok(());
        }
        for module_id in [EDGE_AGENT, EDGE_HUB] {
            if self
                .store
                .get_module(&device.device_id, module_id)
                .await?
                .is_some()
            {
                continue;
            }
            let record = ModuleRecord {
                device_id: device.device_id.clone(),
                module_id: module_id.to_owned(),
                generation_id: new_generation_id(),
                etag: String::new(),
                managed_by: Some("iotEdge".into()),
                connection_state: ConnectionState::Disconnected,
                connection_node: None,
                connection_state_updated_time: None,
                last_activity_time: None,
                cloud_to_device_message_count: 0,
                authentication: build_authentication(None, None)?,
            };
            match self.store.write_module(ModuleWrite::Create(record)).await? {
                // Another node made it meanwhile, or the device went away: both are fine.
                Ok(_) | Err(WriteConflict::AlreadyExists | WriteConflict::NotFound) => {}
                Err(WriteConflict::EtagMismatch) => {}
            }
        }
        Ok(())
    }

    /// `POST /devices/{id}/applyConfigurationContent`: a deployment manifest's
    /// `modulesContent` becomes the desired properties of the Edge device's modules
    /// (`$edgeAgent` and `$edgeHub` must be in it; modules that do not exist yet are skipped,
    /// and nothing is created). Refused input writes nothing.
    pub async fn apply_configuration_content(
        &self,
        device_id: &str,
        content: &ConfigurationContent,
    ) -> Result<(), HubError> {
        let device = self.device_record(device_id).await?;
        if content.modules_content.is_none() {
            return Err(HubError::ArgumentInvalid(
                "The configuration content must hold modulesContent.".into(),
            ));
        }
        let config = Configuration {
            id: "applyconfigurationcontent".into(),
            content: content.clone(),
            ..Configuration::default()
        };
        let parsed = Parsed::parse(&config)?;
        if parsed.layered {
            return Err(HubError::ArgumentInvalid(
                "A deployment applied to one device sets each module's whole \
                 'properties.desired'; paths below it belong to layered deployments."
                    .into(),
            ));
        }
        if !device.iot_edge {
            return Err(HubError::ArgumentInvalid(format!(
                "Device '{device_id}' is not an IoT Edge device (capabilities.iotEdge is false)."
            )));
        }
        self.ensure_edge_modules(&device).await?;
        let (desired, _) = plan_edge(&[&parsed], &BTreeMap::new());
        self.write_edge_modules(device_id, &desired, None).await
    }

    /// Applies the deployments that target an Edge device whose twin's query document is
    /// `doc`, unless its `$edgeAgent` twin says they are applied already.
    pub(crate) async fn apply_deployments(
        &self,
        device: &DeviceRecord,
        doc: &Value,
        ranked: &[Parsed],
    ) -> Result<(), HubError> {
        let id = &device.device_id;
        let targeting: Vec<&Parsed> = ranked.iter().filter(|c| c.targets(doc)).collect();
        let agent = self
            .store
            .get_module_twin(id, EDGE_AGENT)
            .await?
            .unwrap_or_else(|| empty_twin(id));
        if targeting.is_empty() && agent.configurations.is_empty() {
            return Ok(());
        }
        let mut current = BTreeMap::new();
        for module in self.store.list_modules(id).await? {
            let twin = self.store.get_module_twin(id, &module.module_id).await?;
            current.insert(
                module.module_id,
                twin.map(|t| t.desired).unwrap_or_default(),
            );
        }
        let (desired, entries) = plan_edge(&targeting, &current);
        if entries == agent.configurations {
            return Ok(());
        }
        self.write_edge_modules(id, &desired, Some(entries)).await
    }

    /// Replaces the desired properties of each existing module in `desired`, `$edgeAgent`
    /// last (with `entries` as its `configurations`, when given), so that a pass stopped
    /// half way is repeated whole.
    async fn write_edge_modules(
        &self,
        device_id: &str,
        desired: &BTreeMap<String, Map<String, Value>>,
        entries: Option<Map<String, Value>>,
    ) -> Result<(), HubError> {
        let mut order: Vec<&String> = desired.keys().filter(|m| *m != EDGE_AGENT).collect();
        let agent = EDGE_AGENT.to_owned();
        order.push(&agent);
        for module_id in order {
            if self.store.get_module(device_id, module_id).await?.is_none() {
                continue;
            }
            let is_agent = module_id == EDGE_AGENT;
            for attempt in 0..=TRIES {
                if attempt == TRIES {
                    return Err(HubError::PreconditionFailed(
                        "the module twin kept changing".into(),
                    ));
                }
                let twin: TwinRecord = self
                    .store
                    .get_module_twin(device_id, module_id)
                    .await?
                    .unwrap_or_else(|| empty_twin(device_id));
                let patch = match desired.get(module_id) {
                    Some(new) => replacement_patch(&twin.desired, new),
                    None => Map::new(),
                };
                let next_entries = match (&entries, is_agent) {
                    (Some(e), true) => e.clone(),
                    _ => twin.configurations.clone(),
                };
                if patch.iter().all(|(k, v)| twin.desired.get(k) == Some(v))
                    && next_entries == twin.configurations
                {
                    break;
                }
                if self
                    .write_module_twin(device_id, module_id, &twin, patch, next_entries)
                    .await?
                {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Whether the identity that logged in with its own credentials may manage the modules
    /// of `device_id` (`/devices/{id}/modules…`): only an IoT Edge device (or its
    /// `$edgeAgent`), and only its own.
    pub async fn authorize_edge_modules(
        &self,
        who: &DeviceIdentity,
        device_id: &str,
    ) -> Result<(), HubError> {
        let own =
            who.device_id == device_id && who.module_id.as_deref().is_none_or(|m| m == EDGE_AGENT);
        if own && self.device_record(device_id).await?.iot_edge {
            Ok(())
        } else {
            Err(HubError::Unauthorized(format!(
                "Unauthorized: '{}' may not manage the modules of device '{device_id}'.",
                who.key()
            )))
        }
    }
}
