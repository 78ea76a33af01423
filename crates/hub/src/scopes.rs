//! Parent and child devices: `deviceScope` and `parentScopes`, and the rules IoT Hub keeps
//! for them.
//!
//! An IoT Edge device's `deviceScope` is its own (`ms-azure-iot-edge://{id}-{generationId}`,
//! made by the hub); its parent, another Edge device, is named in `parentScopes`. A device
//! that is not an Edge device names its parent by setting its `deviceScope` to the parent's
//! scope, and IoT Hub derives `parentScopes` (`[deviceScope]`) from it. Either way the scope
//! must name an existing Edge device, and Edge devices nest at most [`MAX_EDGE_LAYERS`] deep
//! (Microsoft's "Understand Azure IoT Edge limits and restrictions", "Number of nested
//! hierarchy layers").

use ironhub_store::DeviceRecord;

use crate::{Hub, HubError};

/// The prefix of the scopes IoT Hub makes for Edge devices.
pub const EDGE_SCOPE_PREFIX: &str = "ms-azure-iot-edge://";

/// How many layers of Edge devices may hang below a top-level Edge device.
pub const MAX_EDGE_LAYERS: usize = 5;

/// The device id an Edge scope names (`ms-azure-iot-edge://{id}-{generationId}`), as the
/// Azure CLI reads it (`parent show`).
pub fn scope_device_id(scope: &str) -> Option<&str> {
    let rest = scope.strip_prefix(EDGE_SCOPE_PREFIX)?;
    let (id, generation) = rest.rsplit_once('-')?;
    (!id.is_empty() && !generation.is_empty()).then_some(id)
}

fn invalid(msg: String) -> HubError {
    HubError::ArgumentInvalid(msg)
}

impl Hub {
    /// The Edge device whose scope `scope` is, or a 400 saying why there is none.
    async fn edge_by_scope(&self, scope: &str, what: &str) -> Result<DeviceRecord, HubError> {
        let missing = || {
            invalid(format!(
                "The {what} '{scope}' is not the scope of an IoT Edge device of this hub."
            ))
        };
        let id = scope_device_id(scope).ok_or_else(missing)?;
        match self.store.get_device(id).await? {
            Some(d) if d.iot_edge && d.device_scope.as_deref() == Some(scope) => Ok(d),
            _ => Err(missing()),
        }
    }

    /// Settles `next.device_scope` and `next.parent_scopes` (as a client asked them, after the
    /// registry's defaults) against IoT Hub's rules; `current` is the device before an update,
    /// `scope_given` whether the request had a `deviceScope` (`""` included).
    ///
    /// For a device that is not an Edge device, a given `deviceScope` decides and `parentScopes`
    /// is derived from it, whatever the request said: the Azure CLI changes or removes a
    /// parent (`parent set --force`, `children remove`) by sending the device it read with only
    /// `deviceScope` changed, its old `parentScopes` included. Without `deviceScope`, one
    /// entry of `parentScopes` names the parent. A scope left as it was is not checked again,
    /// so that a device whose parent was deleted can still be updated.
    pub(crate) async fn settle_scopes(
        &self,
        next: &mut DeviceRecord,
        current: Option<&DeviceRecord>,
        scope_given: bool,
    ) -> Result<(), HubError> {
        let unchanged = |parents: &[String]| current.is_some_and(|c| c.parent_scopes == parents);
        let too_many = |n: usize| {
            invalid(format!(
                "The device '{}' names {n} parents; a device has at most one.",
                next.device_id
            ))
        };
        next.parent_scopes.retain(|s| !s.is_empty());
        if next.iot_edge {
            if next.parent_scopes.len() > 1 {
                return Err(too_many(next.parent_scopes.len()));
            }
            if let Some(parent) = next.parent_scopes.first()
                && !unchanged(&next.parent_scopes)
            {
                self.check_edge_parent(next, parent).await?;
            }
            return Ok(());
        }
        let scope = if scope_given {
            next.device_scope.take().filter(|s| !s.is_empty())
        } else {
            match next.parent_scopes.as_slice() {
                [] => None,
                [only] => Some(only.clone()),
                more => return Err(too_many(more.len())),
            }
        };
        let parents: Vec<String> = scope.iter().cloned().collect();
        if let Some(s) = &scope
            && !unchanged(&parents)
            && self.edge_by_scope(s, "deviceScope").await?.device_id == next.device_id
        {
            return Err(invalid(format!(
                "The device '{}' cannot be its own parent.",
                next.device_id
            )));
        }
        next.device_scope = scope;
        next.parent_scopes = parents;
        Ok(())
    }

    /// An Edge device's parent must be another Edge device, not one of its own descendants,
    /// and no deeper than [`MAX_EDGE_LAYERS`] below a top-level Edge device.
    async fn check_edge_parent(&self, device: &DeviceRecord, scope: &str) -> Result<(), HubError> {
        let mut parent = self.edge_by_scope(scope, "parent scope").await?;
        let mut layers = 1;
        loop {
            if parent.device_id == device.device_id {
                return Err(invalid(format!(
                    "The device '{}' cannot be its own ancestor.",
                    device.device_id
                )));
            }
            let Some(above) = parent.parent_scopes.first().cloned() else {
                break;
            };
            layers += 1;
            if layers > MAX_EDGE_LAYERS {
                return Err(invalid(format!(
                    "The device '{}' would be more than {MAX_EDGE_LAYERS} layers below a top-level IoT Edge device.",
                    device.device_id
                )));
            }
            match self.edge_by_scope(&above, "parent scope").await {
                Ok(p) => parent = p,
                // An ancestor deleted since: the chain ends there.
                Err(_) => break,
            }
        }
        // The device's own Edge descendants move down with it.
        let below = match &device.device_scope {
            Some(scope) => self.edge_layers_below(scope).await?,
            None => 0,
        };
        if layers + below > MAX_EDGE_LAYERS {
            return Err(invalid(format!(
                "Under this parent, the Edge devices below '{}' would be more than \
                 {MAX_EDGE_LAYERS} layers below a top-level IoT Edge device.",
                device.device_id
            )));
        }
        Ok(())
    }

    /// How many layers of Edge devices hang below the Edge device whose scope is `scope`
    /// (0 when it has no Edge children). Reads the registry page by page; only a change of an
    /// Edge device's parent asks.
    async fn edge_layers_below(&self, scope: &str) -> Result<usize, HubError> {
        const PAGE: usize = 1000;
        // Each Edge device's scope, by its parent's scope.
        let mut children: std::collections::HashMap<String, Vec<String>> = Default::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list_devices(after.as_deref(), PAGE).await?;
            for d in page.iter().filter(|d| d.iot_edge) {
                if let (Some(parent), Some(own)) = (d.parent_scopes.first(), &d.device_scope) {
                    children
                        .entry(parent.clone())
                        .or_default()
                        .push(own.clone());
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.device_id.clone()),
                _ => break,
            }
        }
        let mut layer = vec![scope.to_owned()];
        let mut depth = 0;
        // Bounded: a deeper tree is refused anyway, and a cycle (which the rules prevent) ends.
        while depth <= MAX_EDGE_LAYERS {
            let next: Vec<String> = layer
                .iter()
                .filter_map(|s| children.get(s))
                .flatten()
                .cloned()
                .collect();
            if next.is_empty() {
                break;
            }
            depth += 1;
            layer = next;
        }
        Ok(depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_their_device() {
        assert_eq!(
            scope_device_id("ms-azure-iot-edge://edge-1-637000000000000000"),
            Some("edge-1")
        );
        assert_eq!(scope_device_id("ms-azure-iot-edge://nodash"), None);
        assert_eq!(scope_device_id("0b5c7f7e-random"), None);
        assert_eq!(scope_device_id("ms-azure-iot-edge://-1"), None);
    }
}
