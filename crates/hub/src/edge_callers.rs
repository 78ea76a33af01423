//! Modules calling the hub over HTTPS as IoT Edge modules do: a module's own SAS token
//! (`sr={host}/devices/{d}/modules/{m}`) sends its telemetry, and invokes direct methods
//! (`ModuleClient.invokeMethod` of the device SDKs, which IoT Edge's hub serves: the Node
//! SDK's `MethodClient` posts to `/twins/{d}[/modules/{m}]/methods` with the module's token
//! and names itself in `x-ms-edge-moduleId: {d}/{m}`).
//!
//! The rules: a module of an IoT Edge device may invoke the methods of its own device, of
//! that device's modules, and of the devices in its scope (whose `parentScopes` name the
//! Edge device's `deviceScope`: the child devices its Edge hub serves).

use ironhub_auth::sas::SasToken;

use crate::{DeviceIdentity, Hub, HubError};

/// The device and module a SAS token is scoped to (`sr` `…/devices/{d}/modules/{m}`), if it
/// is a module's.
pub fn token_module(token: &str) -> Option<(String, String)> {
    let token = SasToken::parse(token).ok()?;
    let resource = token.resource();
    let (_, rest) = resource.split_once("/devices/")?;
    let (device, module) = rest.split_once("/modules/")?;
    (!device.is_empty() && !device.contains('/') && !module.is_empty() && !module.contains('/'))
        .then(|| (device.to_owned(), module.to_owned()))
}

/// The module of `device_id` a SAS token is scoped to, if it is one: the Node SDK's HTTP
/// `ModuleClient` posts its telemetry to the device's path with its module's token.
pub fn module_of_token(device_id: &str, token: &str) -> Option<String> {
    token_module(token).and_then(|(d, m)| (d == device_id).then_some(m))
}

impl Hub {
    /// Whether `device_id` is the Edge device `edge_id` itself or a device in its scope (a
    /// child naming the Edge device's `deviceScope` among its `parentScopes`).
    pub async fn in_edge_scope(&self, edge_id: &str, device_id: &str) -> Result<bool, HubError> {
        let Some(edge) = self.store.get_device(edge_id).await? else {
            return Ok(false);
        };
        if !edge.iot_edge {
            return Ok(false);
        }
        if edge_id == device_id {
            return Ok(true);
        }
        let Some(scope) = edge.device_scope.as_deref() else {
            return Ok(false);
        };
        Ok(self
            .store
            .get_device(device_id)
            .await?
            .is_some_and(|d| d.parent_scopes.iter().any(|p| p == scope)))
    }

    /// Whether module `who` may invoke a direct method of device `device_id` (or of its
    /// module `module_id`): see the module documentation. A 401 when it may not.
    pub async fn authorize_module_method(
        &self,
        who: &DeviceIdentity,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<(), HubError> {
        let allowed = who.module_id.is_some()
            && (who.device_id == device_id || module_id.is_none())
            && self.in_edge_scope(&who.device_id, device_id).await?;
        if allowed {
            Ok(())
        } else {
            let target = module_id.map_or(device_id.to_owned(), |m| format!("{device_id}/{m}"));
            Err(HubError::Unauthorized(format!(
                "Unauthorized: '{}' may not invoke the methods of '{target}'.",
                who.key()
            )))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A SAS token for `sr` signed with a fixed key.
    pub(crate) fn token(sr: &str) -> String {
        ironhub_auth::sas::generate(sr, "a2V5a2V5a2V5a2V5a2V5a2V5", 4_000_000_000, None).unwrap()
    }

    #[test]
    fn a_module_token_names_its_module_of_the_device() {
        let t = token("hub.example/devices/d1/modules/m1");
        assert_eq!(module_of_token("d1", &t).as_deref(), Some("m1"));
        assert_eq!(module_of_token("d2", &t), None, "another device's module");
        assert_eq!(
            module_of_token("d1", &token("hub.example/devices/d1")),
            None
        );
        assert_eq!(
            module_of_token("d1", &token("hub.example/devices/d1/modules/m1/x")),
            None
        );
        assert_eq!(module_of_token("d1", "not a token"), None);
    }
}
