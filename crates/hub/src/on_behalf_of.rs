//! An IoT Edge hub acting for the devices behind it (Azure docs, "Authenticate a downstream
//! device to Azure IoT Hub" and "How an IoT Edge device can be used as a gateway"): upstream,
//! IoT Edge's hub connects each child device (and each of its modules) with a SAS token of its
//! own `$edgeHub` module, `sr={host}/devices/{edgeId}/modules/$edgeHub` signed with that
//! module's key and no `skn` (the C# device SDK's `ClientAuthenticationForEdgeHubOnBehalfOf`,
//! which IoT Edge's hub uses), under the child's own identity: the MQTT client id and
//! username name the child, an AMQP `put-token` names the child's audience.
//!
//! The hub accepts such a token for a device in the Edge device's scope (the Edge device
//! itself, or a device whose `parentScopes` name its `deviceScope`) and for that device's
//! modules, as the child itself; any other device is refused.

use crate::configurations::edge::EDGE_HUB;
use crate::device::DeviceAuth;
use crate::edge_callers::token_module;
use crate::{Hub, HubError};

/// The Edge device whose `$edgeHub` module a token is signed for, when it is one that logs in
/// an identity other than that module itself (`device_id`, `module_id`).
pub fn edge_hub_acting_for(
    token: &str,
    device_id: &str,
    module_id: Option<&str>,
) -> Option<String> {
    let (edge, module) = token_module(token)?;
    let itself = edge == device_id && module_id == Some(EDGE_HUB);
    (module == EDGE_HUB && !itself).then_some(edge)
}

impl Hub {
    /// Authenticates device `device_id` (or its module `module_id`) by the token of Edge
    /// device `edge_id`'s `$edgeHub` module (see the module documentation).
    pub(crate) async fn authenticate_on_behalf_of(
        &self,
        edge_id: &str,
        device_id: &str,
        module_id: Option<&str>,
        token: &str,
    ) -> Result<DeviceAuth, HubError> {
        let edge_hub = self.authenticate_module(edge_id, EDGE_HUB, token).await?;
        let who = module_id.map_or(device_id.to_owned(), |m| format!("{device_id}/{m}"));
        if !self.in_edge_scope(edge_id, device_id).await? {
            return Err(HubError::Unauthorized(format!(
                "Unauthorized: '{who}' is not in the scope of the IoT Edge device '{edge_id}'."
            )));
        }
        let device = self
            .store
            .get_device(device_id)
            .await?
            .filter(|d| d.status == ironhub_store::DeviceStatus::Enabled)
            .ok_or_else(|| {
                HubError::Unauthorized(format!(
                    "Unauthorized: the device '{device_id}' is disabled or gone."
                ))
            })?;
        let generation_id = match module_id {
            None => device.generation_id,
            Some(m) => {
                self.store
                    .get_module(device_id, m)
                    .await?
                    .ok_or_else(|| {
                        HubError::Unauthorized(format!("Unauthorized: there is no module '{who}'."))
                    })?
                    .generation_id
            }
        };
        Ok(DeviceAuth {
            method: edge_hub.method,
            expires: edge_hub.expires,
            generation_id,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::edge_callers::tests::token;

    #[test]
    fn an_edge_hub_token_acts_for_others_only() {
        let t = token("hub.example/devices/gw/modules/$edgeHub");
        assert_eq!(edge_hub_acting_for(&t, "leaf", None).as_deref(), Some("gw"));
        assert_eq!(
            edge_hub_acting_for(&t, "leaf", Some("m")).as_deref(),
            Some("gw")
        );
        assert_eq!(
            edge_hub_acting_for(&t, "gw", Some("filter")).as_deref(),
            Some("gw")
        );
        assert_eq!(
            edge_hub_acting_for(&t, "gw", Some("$edgeHub")),
            None,
            "its own login"
        );
        let other = token("hub.example/devices/gw/modules/filter");
        assert_eq!(edge_hub_acting_for(&other, "leaf", None), None);
        assert_eq!(
            edge_hub_acting_for(&token("hub.example/devices/leaf"), "leaf", None),
            None
        );
    }
}
