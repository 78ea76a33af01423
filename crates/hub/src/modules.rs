//! Module identities: IoT Hub's rules for creating, updating, deleting and listing the modules
//! of a device (`/devices/{id}/modules/{mid}`).

use ironhub_store::{ConnectionState, ModuleRecord, ModuleWrite, WriteConflict};

use crate::model::{Module, ModuleSpec, azure_time};
use crate::registry::{build_authentication, new_generation_id, normalize_if_match, validate_id};
use crate::routing::RoutingSource;
use crate::{Hub, HubError};

/// Checks a module id against IoT Hub's rules (those of device ids).
pub fn validate_module_id(id: &str) -> Result<(), HubError> {
    validate_id("module", id)
}

/// A stored module as the registry API returns it.
pub fn module_view(m: &ModuleRecord) -> Module {
    Module {
        module_id: m.module_id.clone(),
        device_id: m.device_id.clone(),
        managed_by: m.managed_by.clone(),
        generation_id: m.generation_id.clone(),
        etag: m.etag.clone(),
        connection_state: m.connection_state,
        connection_state_updated_time: azure_time(m.connection_state_updated_time),
        last_activity_time: azure_time(m.last_activity_time),
        cloud_to_device_message_count: m.cloud_to_device_message_count,
        authentication: m.authentication.clone(),
    }
}

/// Checks that ids in the body, when given, are those of the URL.
fn check_body_ids(device_id: &str, module_id: &str, spec: &ModuleSpec) -> Result<(), HubError> {
    for (what, given, url) in [
        ("device", spec.device_id.as_deref(), device_id),
        ("module", spec.module_id.as_deref(), module_id),
    ] {
        if let Some(given) = given.filter(|g| !g.is_empty() && *g != url) {
            return Err(HubError::ArgumentInvalid(format!(
                "The {what} id in the body ('{given}') does not match the one in the URL ('{url}')."
            )));
        }
    }
    Ok(())
}

fn conflict_error(
    conflict: WriteConflict,
    device_id: &str,
    module_id: &str,
    etag: &str,
) -> HubError {
    match conflict {
        WriteConflict::AlreadyExists => {
            HubError::ModuleAlreadyExistsOnDevice(device_id.to_owned(), module_id.to_owned())
        }
        WriteConflict::NotFound => {
            HubError::ModuleNotFound(device_id.to_owned(), module_id.to_owned())
        }
        WriteConflict::EtagMismatch => HubError::PreconditionFailed(etag.to_owned()),
    }
}

impl Hub {
    /// `GET /devices/{id}/modules/{mid}`.
    pub async fn get_module(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<ModuleRecord, HubError> {
        match self.store.get_module(device_id, module_id).await? {
            Some(m) => Ok(m),
            None => {
                self.device_record(device_id).await?;
                Err(HubError::ModuleNotFound(
                    device_id.to_owned(),
                    module_id.to_owned(),
                ))
            }
        }
    }

    /// `GET /devices/{id}/modules`: the device's modules in id order; 404 for a device that
    /// does not exist.
    pub async fn list_modules(&self, device_id: &str) -> Result<Vec<ModuleRecord>, HubError> {
        self.device_record(device_id).await?;
        Ok(self.store.list_modules(device_id).await?)
    }

    /// `PUT /devices/{id}/modules/{mid}`: creates the module when there is no `If-Match`,
    /// replaces it when there is one (`*` or its etag). Keys left out are generated on create
    /// and kept on update. Nothing is written when the request is refused.
    pub async fn put_module(
        &self,
        device_id: &str,
        module_id: &str,
        spec: &ModuleSpec,
        if_match: Option<&str>,
    ) -> Result<ModuleRecord, HubError> {
        validate_module_id(module_id)?;
        check_body_ids(device_id, module_id, spec)?;
        crate::nul::reject_nul_in(spec, "the module")?;
        self.device_record(device_id).await?;
        let if_match = if_match.map(normalize_if_match);
        let current = self.store.get_module(device_id, module_id).await?;
        let managed_by = spec.managed_by.clone().filter(|m| !m.is_empty());
        let write = match (current, if_match) {
            (None, None) => ModuleWrite::Create(ModuleRecord {
                device_id: device_id.to_owned(),
                module_id: module_id.to_owned(),
                generation_id: new_generation_id(),
                etag: String::new(),
                managed_by,
                connection_state: ConnectionState::Disconnected,
                connection_node: None,
                connection_state_updated_time: None,
                last_activity_time: None,
                cloud_to_device_message_count: 0,
                authentication: build_authentication(spec.authentication.as_ref(), None)?,
            }),
            (None, Some(_)) => {
                return Err(HubError::ModuleNotFound(
                    device_id.to_owned(),
                    module_id.to_owned(),
                ));
            }
            (Some(_), None) => {
                return Err(HubError::ModuleAlreadyExistsOnDevice(
                    device_id.to_owned(),
                    module_id.to_owned(),
                ));
            }
            (Some(current), Some(tag)) => {
                if tag != "*" && tag != current.etag {
                    return Err(HubError::PreconditionFailed(tag));
                }
                let mut next = current.clone();
                next.managed_by = managed_by;
                next.authentication = build_authentication(
                    spec.authentication.as_ref(),
                    Some(&current.authentication),
                )?;
                ModuleWrite::Replace {
                    record: next,
                    // Compare-and-swap on what was read, so a concurrent write is not lost.
                    if_match: Some(current.etag),
                }
            }
        };
        let before = match &write {
            ModuleWrite::Replace { .. } => self.store.get_module(device_id, module_id).await?,
            _ => None,
        };
        let created = matches!(write, ModuleWrite::Create(_));
        let written = self
            .write_module(write, device_id, module_id, "")
            .await?
            .ok_or_else(|| HubError::ServerError("the store wrote no module".into()))?;
        if created {
            let twin = self.module_twin_json(device_id, module_id);
            self.emit_lifecycle(device_id, Some(module_id), true, twin)
                .await;
        }
        // New credentials end the module's connection, as for a device.
        if before.is_some_and(|b| b.authentication != written.authentication) {
            self.revoke(&format!("{device_id}/{module_id}")).await;
        }
        Ok(written)
    }

    /// `DELETE /devices/{id}/modules/{mid}`, with an optional `If-Match`.
    pub async fn delete_module(
        &self,
        device_id: &str,
        module_id: &str,
        if_match: Option<&str>,
    ) -> Result<(), HubError> {
        self.device_record(device_id).await?;
        let if_match = if_match.map(normalize_if_match);
        let etag = if_match.clone().unwrap_or_default();
        let write = ModuleWrite::Delete {
            device_id: device_id.to_owned(),
            module_id: module_id.to_owned(),
            if_match,
        };
        // The twin as it was, read only when a route takes lifecycle events.
        let before = if self.routes_take(RoutingSource::DeviceLifecycleEvents).await {
            self.module_twin_json(device_id, module_id).await
        } else {
            None
        };
        self.write_module(write, device_id, module_id, &etag)
            .await?;
        if let Some(twin) = before {
            self.emit_lifecycle(device_id, Some(module_id), false, async { Some(twin) })
                .await;
        }
        Ok(())
    }

    async fn write_module(
        &self,
        write: ModuleWrite,
        device_id: &str,
        module_id: &str,
        etag: &str,
    ) -> Result<Option<ModuleRecord>, HubError> {
        match self.store.write_module(write).await? {
            Ok(written) => Ok(written),
            // The device went away between the check and the write.
            Err(WriteConflict::NotFound) if self.store.get_device(device_id).await?.is_none() => {
                Err(HubError::DeviceNotFound(device_id.to_owned()))
            }
            Err(conflict) => Err(conflict_error(conflict, device_id, module_id, etag)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_ids_follow_the_device_id_rules() {
        assert!(validate_module_id("temp-sensor_1").is_ok());
        assert_eq!(validate_module_id("").unwrap_err().status(), 400);
        assert_eq!(validate_module_id("a/b").unwrap_err().status(), 400);
        assert_eq!(
            validate_module_id(&"m".repeat(129)).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn ids_in_the_body_must_be_those_of_the_url() {
        let spec = ModuleSpec {
            module_id: Some("other".into()),
            ..ModuleSpec::default()
        };
        assert!(check_body_ids("d", "m", &spec).is_err());
        let spec = ModuleSpec {
            module_id: Some("m".into()),
            device_id: Some("d".into()),
            ..ModuleSpec::default()
        };
        assert!(check_body_ids("d", "m", &spec).is_ok());
    }
}
