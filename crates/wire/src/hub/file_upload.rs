//! File upload: a device asks where to upload a blob (`POST /devices/{id}/files`,
//! [`FileUploadRequest`] → [`FileUploadInfo`]), uploads it to the hub's storage account, and
//! says how it went (`POST /devices/{id}/files/notifications`, [`FileUploadCompletion`]); the
//! hub then tells services with a [`FileNotification`]. See the Azure REST API reference, IoT
//! Hub device API, "Create File Upload Sas Uri" and "Update File Upload Status", and the Azure
//! docs, "Upload files from a device to the cloud with Azure IoT Hub".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /devices/{id}/files`: the blob the device wants to upload.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileUploadRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_name: Option<String>,
}

/// Where the device uploads: `https://{hostName}/{containerName}/{blobName}{sasToken}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileUploadInfo {
    pub correlation_id: String,
    pub host_name: String,
    pub container_name: String,
    pub blob_name: String,
    pub sas_token: String,
}

/// `POST /devices/{id}/files/notifications`: how the upload went.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileUploadCompletion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_success: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_description: Option<String>,
}

/// A file upload notification, as services receive it (and as the store keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileNotification {
    pub device_id: String,
    pub blob_uri: String,
    pub blob_name: String,
    pub last_updated_time: Option<DateTime<Utc>>,
    pub blob_size_in_bytes: Option<u64>,
    pub enqueued_time_utc: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_leave_out_what_is_absent() {
        let start = FileUploadRequest {
            blob_name: Some("d1/a.txt".into()),
        };
        assert_eq!(
            serde_json::to_value(&start).unwrap(),
            json!({"blobName": "d1/a.txt"})
        );
        let done = FileUploadCompletion {
            correlation_id: Some("c".into()),
            is_success: Some(true),
            status_code: Some(201),
            status_description: Some("Created".into()),
        };
        assert_eq!(
            serde_json::to_value(&done).unwrap(),
            json!({"correlationId": "c", "isSuccess": true, "statusCode": 201,
                   "statusDescription": "Created"})
        );
        let info: FileUploadInfo = serde_json::from_value(json!({
            "correlationId": "c", "hostName": "acct.blob.core.windows.net",
            "containerName": "up", "blobName": "d1/a.txt", "sasToken": "?sv=x"
        }))
        .unwrap();
        assert_eq!(info.sas_token, "?sv=x");
    }
}
