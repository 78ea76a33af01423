//! File upload: a device asks the hub where to put a file (a blob of the hub's storage account,
//! under its device id, with a SAS that lets it write just that blob), uploads it to Azure
//! Storage itself, and tells the hub how it went; on success the hub queues a file upload
//! notification for services.
//!
//! The correlation id that ties the two device calls together is self-contained: the device,
//! blob and expiry, signed with the hub's `iothubowner` key, so any node can complete an upload
//! another node started, with nothing stored in between.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use ironhub_auth::storage::StorageAccount;
use ironhub_store::{FileNotification, FileNotificationRules, LockedFileNotification};

use crate::{Hub, HubError};

/// Longest blob name (IoT Hub's, which is Azure Storage's), the device id prefix included.
pub const MAX_BLOB_NAME: usize = 1024;

/// A hub's file upload settings: IoT Hub's default storage endpoint (`storageEndpoints.$default`)
/// and its file upload notification settings (`messagingEndpoints.fileNotifications`).
#[derive(Debug, Clone)]
pub struct FileUploadSettings {
    pub account: StorageAccount,
    pub container: String,
    /// How long the SAS a device gets is valid (IoT Hub: 1 to 24 hours, 1 by default).
    pub sas_ttl: TimeDelta,
    /// Whether a completed upload queues a notification for services (IoT Hub: off by default).
    pub notifications: bool,
    /// How long a notification waits to be received (IoT Hub: 1 to 48 hours, 1 by default).
    pub notification_ttl: TimeDelta,
    /// How many times a notification is received before it is dropped (IoT Hub: 1 to 100, 10
    /// by default).
    pub max_delivery_count: u32,
    /// How long a received notification stays locked (IoT Hub: 5 to 300 seconds, 60 by default).
    pub lock_duration: TimeDelta,
}

impl FileUploadSettings {
    /// Settings with IoT Hub's defaults for `account` and `container`.
    pub fn new(account: StorageAccount, container: String) -> FileUploadSettings {
        FileUploadSettings {
            account,
            container,
            sas_ttl: TimeDelta::hours(1),
            notifications: false,
            notification_ttl: TimeDelta::hours(1),
            max_delivery_count: 10,
            lock_duration: TimeDelta::seconds(60),
        }
    }
}

/// What a blob looks like in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProperties {
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

/// Reads a blob's properties from Azure Storage (an HTTP(S) `HEAD`), so that a notification
/// says how large the file is. Provided by the binary, which owns the HTTP client.
#[async_trait]
pub trait BlobStorage: Send + Sync + fmt::Debug {
    /// The properties of the blob at `url` (which carries a read SAS); `None` when it does not
    /// exist; an error when storage could not be asked.
    async fn properties(&self, url: &str) -> Result<Option<BlobProperties>, String>;
}

/// The hub's file upload: its settings and how it reaches storage.
#[derive(Debug, Clone)]
pub struct FileUpload {
    pub settings: FileUploadSettings,
    pub storage: Arc<dyn BlobStorage>,
}

pub use ironhub_wire::hub::{FileUploadCompletion, FileUploadInfo, FileUploadRequest};

/// The parts of a correlation id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Upload {
    device_id: String,
    container: String,
    blob_name: String,
    expires: i64,
}

impl Upload {
    fn payload(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.device_id, self.container, self.blob_name, self.expires
        )
    }
}

fn sign(key: &str, payload: &str) -> Result<String, HubError> {
    ironhub_auth::derive_device_key(key, &format!("file-upload\n{payload}"))
        .map_err(|_| HubError::ServerError("The hub's owner key is not valid base64.".into()))
}

fn correlation_id(key: &str, upload: &Upload) -> Result<String, HubError> {
    let payload = upload.payload();
    let mac = sign(key, &payload)?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(mac)
    ))
}

fn open_correlation_id(key: &str, id: &str) -> Result<Upload, HubError> {
    let bad = || {
        HubError::InvalidFileUploadCorrelationId(format!(
            "The correlation id '{id}' is not one this hub gave."
        ))
    };
    let (payload, mac) = id.split_once('.').ok_or_else(bad)?;
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?)
        .map_err(|_| bad())?;
    let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| bad())?;
    let expected = sign(key, &payload)?;
    if !ring_eq(expected.as_bytes(), &mac) {
        return Err(bad());
    }
    let mut parts = payload.split('\n');
    let mut next = || parts.next().map(str::to_owned).ok_or_else(bad);
    Ok(Upload {
        device_id: next()?,
        container: next()?,
        blob_name: next()?,
        expires: next()?.parse().map_err(|_| bad())?,
    })
}

/// Constant-time comparison.
fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The blob name a device asked for: 1 to 1024 characters with its device id prefix, no
/// control characters or `\`, and no empty, `.` or `..` path segment (which would let a URL
/// normalizer move the blob out of the device's folder).
fn validate_blob_name(device_id: &str, name: &str) -> Result<(), HubError> {
    let invalid = |why: &str| {
        HubError::ArgumentInvalid(format!("The blob name '{name}' is not valid: {why}."))
    };
    if name.is_empty() {
        return Err(HubError::ArgumentNull("blobName is required.".into()));
    }
    if device_id.len() + 1 + name.len() > MAX_BLOB_NAME {
        return Err(invalid(&format!(
            "with the device id, a blob name is at most {MAX_BLOB_NAME} characters"
        )));
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Err(invalid("it contains a control character or '\\'"));
    }
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(invalid("a path segment is empty, '.' or '..'"));
    }
    Ok(())
}

fn storage_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Hub {
    /// Configures file upload (without it, the device calls answer
    /// `DefaultStorageEndpointNotConfigured`).
    pub fn with_file_upload(mut self, file_upload: FileUpload) -> Hub {
        self.file_upload = Some(Arc::new(file_upload));
        self
    }

    fn file_upload(&self) -> Result<&FileUpload, HubError> {
        self.file_upload.as_deref().ok_or_else(|| {
            HubError::DefaultStorageEndpointNotConfigured(
                "File upload is not configured on this hub: start it with --file-upload-connection-string and --file-upload-container.".into(),
            )
        })
    }

    fn owner_key(&self) -> Result<&str, HubError> {
        self.settings
            .policy("iothubowner")
            .map(|p| p.primary_key.as_str())
            .ok_or_else(|| HubError::ServerError("The hub has no iothubowner policy.".into()))
    }

    /// `POST /devices/{id}/files`: where (and with which SAS) the device uploads `blobName`.
    pub async fn start_file_upload(
        &self,
        device_id: &str,
        request: &FileUploadRequest,
    ) -> Result<FileUploadInfo, HubError> {
        let upload = self.file_upload()?;
        let name = request.blob_name.as_deref().unwrap_or_default();
        validate_blob_name(device_id, name)?;
        self.device_record(device_id).await?;
        let settings = &upload.settings;
        let now = self.now();
        let expiry = now + settings.sas_ttl;
        let blob_name = format!("{device_id}/{name}");
        let token = Upload {
            device_id: device_id.to_owned(),
            container: settings.container.clone(),
            blob_name: blob_name.clone(),
            expires: expiry.timestamp(),
        };
        // The start is backdated a little: the device's storage clock may be behind ours.
        let sas_token = settings.account.blob_sas(
            &settings.container,
            &blob_name,
            "rw",
            &storage_time(now - TimeDelta::minutes(5)),
            &storage_time(expiry),
        );
        Ok(FileUploadInfo {
            correlation_id: correlation_id(self.owner_key()?, &token)?,
            host_name: settings.account.blob_host().to_owned(),
            container_name: settings.container.clone(),
            blob_name,
            sas_token,
        })
    }

    /// `POST /devices/{id}/files/notifications`: the device says how its upload went; a
    /// success queues a file upload notification (when notifications are on).
    pub async fn complete_file_upload(
        &self,
        device_id: &str,
        completion: &FileUploadCompletion,
    ) -> Result<(), HubError> {
        let upload = self.file_upload()?;
        let id = completion
            .correlation_id
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| HubError::ArgumentNull("correlationId is required.".into()))?;
        let is_success = completion.is_success.ok_or_else(|| {
            HubError::InvalidFileUploadCompletionStatus(
                "isSuccess (true or false) is required.".into(),
            )
        })?;
        let token = open_correlation_id(self.owner_key()?, id)?;
        if token.device_id != device_id {
            return Err(HubError::InvalidFileUploadCorrelationId(format!(
                "The correlation id '{id}' belongs to another device."
            )));
        }
        let now = self.now();
        if token.expires < now.timestamp() {
            return Err(HubError::ExpiredFileUploadCorrelationId(format!(
                "The correlation id '{id}' has expired."
            )));
        }
        tracing::info!(target: "FileUploadOperations", device_id, blob = %token.blob_name, is_success, status_code = ?completion.status_code, description = ?completion.status_description, "file upload completed");
        let settings = &upload.settings;
        if !is_success || !settings.notifications {
            return Ok(());
        }
        let blob_uri = settings
            .account
            .blob_url(&token.container, &token.blob_name);
        let read_sas = settings.account.blob_sas(
            &token.container,
            &token.blob_name,
            "r",
            &storage_time(now - TimeDelta::minutes(5)),
            &storage_time(now + TimeDelta::minutes(5)),
        );
        let properties = match upload
            .storage
            .properties(&format!("{blob_uri}{read_sas}"))
            .await
        {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                return Err(HubError::InvalidStorageEndpointOrBlob(format!(
                    "The blob '{}' does not exist in the container '{}'.",
                    token.blob_name, token.container
                )));
            }
            Err(e) => {
                tracing::warn!(device_id, blob = %token.blob_name, error = %e, "could not read the uploaded blob's properties; notifying without them");
                None
            }
        };
        let notification = FileNotification {
            device_id: device_id.to_owned(),
            blob_uri,
            blob_name: token.blob_name,
            last_updated_time: properties.as_ref().and_then(|p| p.last_modified),
            blob_size_in_bytes: properties.map(|p| p.size),
            enqueued_time_utc: now,
        };
        self.store
            .file_notification_enqueue(notification, now + settings.notification_ttl)
            .await?;
        Ok(())
    }

    fn notification_rules(&self) -> Result<FileNotificationRules, HubError> {
        let settings = &self.file_upload()?.settings;
        Ok(FileNotificationRules {
            lock_duration: settings.lock_duration,
            max_delivery_count: settings.max_delivery_count,
        })
    }

    /// The oldest file upload notification not locked by another receiver, locked for this one.
    pub async fn receive_file_notification(
        &self,
    ) -> Result<Option<LockedFileNotification>, HubError> {
        let rules = self.notification_rules()?;
        Ok(self.store.file_notification_lock(rules, self.now()).await?)
    }

    /// Completes (removes) or abandons (makes visible again) a received notification.
    pub async fn settle_file_notification(
        &self,
        lock_token: &str,
        complete: bool,
    ) -> Result<(), HubError> {
        self.file_upload()?;
        if self
            .store
            .file_notification_settle(lock_token, complete, self.now())
            .await?
        {
            Ok(())
        } else {
            Err(HubError::DeviceMessageLockLost(format!(
                "No file notification is locked under '{lock_token}' (settled already, or its lock ran out)."
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1vZi10aGUtaHViLW93bmVyLXBvbGljeQ==";

    #[test]
    fn correlation_ids_round_trip_and_resist_tampering() {
        let upload = Upload {
            device_id: "dev1".into(),
            container: "uploads".into(),
            blob_name: "dev1/a b.txt".into(),
            expires: 1_800_000_000,
        };
        let id = correlation_id(KEY, &upload).unwrap();
        assert_eq!(open_correlation_id(KEY, &id).unwrap(), upload);
        let (payload, mac) = id.split_once('.').unwrap();
        let forged = Upload {
            device_id: "dev2".into(),
            ..upload
        };
        let forged_payload = URL_SAFE_NO_PAD.encode(forged.payload());
        for bad in [
            format!("{forged_payload}.{mac}"),
            format!("{payload}.{}", URL_SAFE_NO_PAD.encode("nope")),
            "garbage".to_owned(),
            format!("{payload}."),
        ] {
            assert_eq!(
                open_correlation_id(KEY, &bad).unwrap_err().code(),
                400_015,
                "{bad}"
            );
        }
        let other_key = "b3RoZXIta2V5";
        assert!(open_correlation_id(other_key, &id).is_err());
    }

    #[test]
    fn blob_names() {
        assert!(validate_blob_name("d", "a.txt").is_ok());
        assert!(validate_blob_name("d", "logs/2024/a.txt").is_ok());
        for bad in ["", "../x", "a/./b", "a//b", "a\\b", "a\nb", "x/"] {
            assert!(validate_blob_name("d", bad).is_err(), "{bad:?}");
        }
        assert!(validate_blob_name("d", &"x".repeat(1022)).is_ok());
        assert!(validate_blob_name("d", &"x".repeat(1023)).is_err());
    }
}
