//! Module twins (`/twins/{id}/modules/{mid}`): the rules of device twins (see `twin`), on a
//! twin of the module's own.

use base64::Engine as _;
use chrono::Utc;
use ironhub_store::{DeviceRecord, ModuleRecord, TwinRecord, WriteConflict};
use serde_json::Value;

use crate::model::{Thumbprint, Twin, azure_time};
use crate::routing::hub_events::TwinOp;
use crate::twin::{
    apply_reported, device_twin_doc, empty_twin, reported_change_notification, reported_patch,
    service_change_notification, service_update, too_busy, twin_view,
};
use crate::{DeviceIdentity, Hub, HubError};

/// The module twin's etag; one never written has one made from the module's generation id
/// (which no store etag can equal, and which changes when the module is created again).
fn module_twin_etag(module: &ModuleRecord, twin: &TwinRecord) -> String {
    if twin.etag.is_empty() {
        base64::engine::general_purpose::STANDARD.encode(format!("twin:{}", module.generation_id))
    } else {
        twin.etag.clone()
    }
}

/// A module's twin as `GET /twins/{id}/modules/{mid}` returns it: the twin's own fields, the
/// module's connection and credentials, the device's status.
pub fn module_twin_view(device: &DeviceRecord, module: &ModuleRecord, twin: &TwinRecord) -> Twin {
    let mut view = twin_view(device, twin);
    view.module_id = Some(module.module_id.clone());
    view.etag = module_twin_etag(module, twin);
    view.device_etag = module.etag.clone();
    view.connection_state = module.connection_state;
    view.last_activity_time = azure_time(module.last_activity_time);
    view.cloud_to_device_message_count = module.cloud_to_device_message_count;
    view.authentication_type = module.authentication.kind;
    view.x509_thumbprint = Thumbprint {
        primary_thumbprint: module
            .authentication
            .x509_thumbprint
            .primary_thumbprint
            .clone(),
        secondary_thumbprint: module
            .authentication
            .x509_thumbprint
            .secondary_thumbprint
            .clone(),
    };
    view.model_id = twin.model_id.clone().unwrap_or_default();
    view
}

impl Hub {
    /// The module, its device and its twin (an empty one if never written).
    async fn load_module_twin(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<(DeviceRecord, ModuleRecord, TwinRecord), HubError> {
        let module = self.get_module(device_id, module_id).await?;
        let device = self.device_record(device_id).await?;
        let twin = self
            .store
            .get_module_twin(device_id, module_id)
            .await?
            .unwrap_or_else(|| empty_twin(device_id));
        Ok((device, module, twin))
    }

    /// `GET /twins/{id}/modules/{mid}`.
    pub async fn get_module_twin(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<Twin, HubError> {
        self.admit(crate::throttle::Operation::ServiceTwin, Some(device_id))?;
        self.module_twin_of(device_id, module_id).await
    }

    /// A module's twin, for the hub's own rules (not throttled).
    pub(crate) async fn module_twin_of(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<Twin, HubError> {
        let (device, module, twin) = self.load_module_twin(device_id, module_id).await?;
        Ok(module_twin_view(&device, &module, &twin))
    }

    /// `PATCH /twins/{id}/modules/{mid}` (`replace == false`) or `PUT` (`replace == true`):
    /// tags and desired properties, as for a device's twin.
    pub async fn update_module_twin(
        &self,
        device_id: &str,
        module_id: &str,
        doc: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, HubError> {
        self.admit(crate::throttle::Operation::ServiceTwin, Some(device_id))?;
        let if_match = if_match.map(crate::registry::normalize_if_match);
        let (device, module, current) = self.load_module_twin(device_id, module_id).await?;
        if let Some(tag) = &if_match
            && tag != "*"
            && *tag != module_twin_etag(&module, &current)
        {
            return Err(HubError::PreconditionFailed(tag.clone()));
        }
        // One time for the stored `$metadata` and the change notification.
        let now = azure_time(Some(Utc::now()));
        let (next, pushed) = service_update(&current, doc, replace, &now)?;
        // Compare-and-swap on what was read (the client's etag was checked above).
        let saved = match self
            .store
            .put_module_twin(module_id, next, Some(current.etag.clone()))
            .await?
        {
            Ok(t) => t,
            Err(WriteConflict::NotFound) => {
                return Err(HubError::ModuleNotFound(
                    device_id.to_owned(),
                    module_id.to_owned(),
                ));
            }
            Err(_) => return Err(HubError::PreconditionFailed(if_match.unwrap_or_default())),
        };
        let notification = service_change_notification(&current, &saved, pushed.as_ref(), &now);
        self.emit_twin_change(
            device_id,
            Some(module_id),
            TwinOp::of(replace),
            notification,
        )
        .await;
        self.push_desired(&format!("{device_id}/{module_id}"), pushed)
            .await;
        Ok(module_twin_view(&device, &module, &saved))
    }

    /// A module's twin as JSON, as a lifecycle event's body (`None` when it cannot be read).
    pub(crate) async fn module_twin_json(&self, device_id: &str, module_id: &str) -> Option<Value> {
        let twin = self.module_twin_of(device_id, module_id).await.ok()?;
        serde_json::to_value(twin).ok()
    }

    /// A connected device's or module's `GET` of its own twin.
    pub async fn identity_twin(&self, who: &DeviceIdentity) -> Result<Value, HubError> {
        match &who.module_id {
            None => self.device_twin(&who.device_id).await,
            Some(m) => {
                self.admit(crate::throttle::Operation::DeviceTwin, Some(&who.key()))?;
                let (_, _, twin) = self.load_module_twin(&who.device_id, m).await?;
                Ok(device_twin_doc(&twin))
            }
        }
    }

    /// A connected device's or module's patch of its own reported properties; returns the new
    /// reported `$version`.
    pub async fn identity_patch_reported(
        &self,
        who: &DeviceIdentity,
        body: &[u8],
    ) -> Result<u64, HubError> {
        let Some(module_id) = &who.module_id else {
            return self.patch_reported(&who.device_id, body).await;
        };
        self.admit(crate::throttle::Operation::DeviceTwin, Some(&who.key()))?;
        let patch = reported_patch(body)?;
        // Compare-and-swap, retried: a service may update the same twin meanwhile.
        for _ in 0..5 {
            let (_, _, current) = self.load_module_twin(&who.device_id, module_id).await?;
            let now = azure_time(Some(Utc::now()));
            let next = apply_reported(&current, &patch, &now)?;
            match self
                .store
                .put_module_twin(module_id, next, Some(current.etag.clone()))
                .await?
            {
                Ok(saved) => {
                    let body = reported_change_notification(&patch, &saved, &now);
                    self.emit_twin_change(&who.device_id, Some(module_id), TwinOp::Update, body)
                        .await;
                    return Ok(saved.reported_version);
                }
                Err(WriteConflict::EtagMismatch) => continue,
                Err(_) => {
                    return Err(HubError::ModuleNotFound(
                        who.device_id.clone(),
                        module_id.clone(),
                    ));
                }
            }
        }
        Err(too_busy())
    }
}
