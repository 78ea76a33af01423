//! IoT Hub's JSON shapes (typed in `ironhub-wire`) and how a stored device renders as one.

use ironhub_store::DeviceRecord;

pub use ironhub_wire::hub::*;
pub use ironhub_wire::time::azure_time;

/// A stored device as the registry API returns it.
pub fn device_view(d: &DeviceRecord) -> Device {
    Device {
        device_id: d.device_id.clone(),
        generation_id: d.generation_id.clone(),
        etag: d.etag.clone(),
        connection_state: d.connection_state,
        status: d.status,
        status_reason: d.status_reason.clone(),
        connection_state_updated_time: azure_time(d.connection_state_updated_time),
        status_updated_time: azure_time(d.status_updated_time),
        last_activity_time: azure_time(d.last_activity_time),
        cloud_to_device_message_count: d.cloud_to_device_message_count,
        authentication: d.authentication.clone(),
        capabilities: Capabilities {
            iot_edge: d.iot_edge,
        },
        device_scope: d.device_scope.clone(),
        parent_scopes: d.parent_scopes.clone(),
        other: Default::default(),
    }
}
