//! File upload: the device's two calls (`POST /devices/{id}/files` and
//! `/files/notifications`) and the services' file upload notification feed
//! (`/messages/serviceBound/filenotifications`, ironhub's REST counterpart of IoT Hub's AMQP
//! link).

use http::Method;
use ironhub_auth::sas;
use ironhub_wire::hub::{
    FileNotification, FileUploadCompletion, FileUploadInfo, FileUploadRequest,
};
use serde_json::Value;

use crate::{ClientError, HubClient, NO_BODY, device_path};

/// The feed of file upload notifications.
const FEED: &str = "/messages/serviceBound/filenotifications";

/// A file upload notification received under a lock.
#[derive(Debug, Clone)]
pub struct LockedFileNotification {
    pub lock_token: String,
    pub notification: FileNotification,
}

impl HubClient {
    /// The same hub, signing as the device `device_id` with its symmetric `key` (a token for
    /// `{host}/devices/{id}`), as a device SDK does.
    pub fn as_device(&self, device_id: &str, key: &str) -> Result<HubClient, ClientError> {
        sas::generate("check", key, 0, None)
            .map_err(|_| ClientError::ConnectionString("the device's key is not base64".into()))?;
        let mut device = self.clone();
        device.resource = format!("{}/devices/{device_id}", self.resource);
        device.key = key.to_owned();
        device.key_name = None;
        Ok(device)
    }

    /// `POST /devices/{id}/files` (as the device): where to upload `blob_name`.
    pub async fn start_file_upload(
        &self,
        device_id: &str,
        blob_name: &str,
    ) -> Result<FileUploadInfo, ClientError> {
        let path = format!("{}/files", device_path(device_id));
        let body = FileUploadRequest {
            blob_name: Some(blob_name.to_owned()),
        };
        self.request(Method::POST, &path, &[], Some(&body), None)
            .await
    }

    /// `POST /devices/{id}/files/notifications` (as the device): how the upload went.
    pub async fn complete_file_upload(
        &self,
        device_id: &str,
        correlation_id: &str,
        is_success: bool,
        status_code: u16,
        status_description: &str,
    ) -> Result<(), ClientError> {
        let path = format!("{}/files/notifications", device_path(device_id));
        let body = FileUploadCompletion {
            correlation_id: Some(correlation_id.to_owned()),
            is_success: Some(is_success),
            status_code: Some(i64::from(status_code)),
            status_description: Some(status_description.to_owned()),
        };
        self.request(Method::POST, &path, &[], Some(&body), None)
            .await
            .map(|_: Value| ())
    }

    /// `GET /messages/serviceBound/filenotifications`: the next notification, locked; `None`
    /// when there is none.
    pub async fn receive_file_notification(
        &self,
    ) -> Result<Option<LockedFileNotification>, ClientError> {
        let response = self
            .request_raw(
                Method::GET,
                FEED,
                &[],
                Vec::new(),
                bytes::Bytes::new(),
                crate::REQUEST_TIMEOUT,
            )
            .await?;
        if response.status == 204 {
            return Ok(None);
        }
        let lock_token = response
            .header("iothub-locktoken")
            .map(str::to_owned)
            .ok_or_else(|| ClientError::InvalidResponse {
                status: response.status,
                detail: "the notification has no iothub-locktoken header".into(),
            })?;
        Ok(Some(LockedFileNotification {
            lock_token,
            notification: response.json()?,
        }))
    }

    /// Completes (`DELETE …/{lockToken}`) or abandons (`POST …/{lockToken}/abandon`) a
    /// received notification.
    pub async fn settle_file_notification(
        &self,
        lock_token: &str,
        complete: bool,
    ) -> Result<(), ClientError> {
        let token = sas::url_encode(lock_token);
        let (method, path) = if complete {
            (Method::DELETE, format!("{FEED}/{token}"))
        } else {
            (Method::POST, format!("{FEED}/{token}/abandon"))
        };
        self.request(method, &path, &[], NO_BODY, None)
            .await
            .map(|_: Value| ())
    }
}
