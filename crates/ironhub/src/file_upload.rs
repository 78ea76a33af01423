//! File upload's wiring: the `serve` settings of the hub's storage account (IoT Hub's file
//! upload settings), and the HTTP(S) client the hub reads uploaded blobs with.

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use clap::Args;
use ironhub_auth::storage::StorageAccount;
use ironhub_client::WebClient;
use ironhub_hub::file_upload::{BlobProperties, BlobStorage, FileUploadSettings};
use serde::Deserialize;

/// `ironhub serve`'s file upload flags (each also an `IRONHUB_*` variable and a config key).
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "File upload")]
pub struct FileUploadArgs {
    /// The Azure Storage connection string of the account devices upload files to (Azurite's
    /// works too); with --file-upload-container, it turns file upload on.
    #[arg(
        long,
        env = "IRONHUB_FILE_UPLOAD_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub file_upload_connection_string: Option<String>,
    /// The blob container uploads go to.
    #[arg(long, env = "IRONHUB_FILE_UPLOAD_CONTAINER")]
    pub file_upload_container: Option<String>,
    /// How long the SAS a device gets for its upload is valid, in hours (1 to 24) [default: 1].
    #[arg(long, env = "IRONHUB_FILE_UPLOAD_SAS_TTL_HOURS", value_parser = clap::value_parser!(u32).range(1..=24))]
    pub file_upload_sas_ttl_hours: Option<u32>,
    /// Queue a notification for services when a device completes an upload [default: false].
    #[arg(long, env = "IRONHUB_FILE_UPLOAD_NOTIFICATIONS", num_args = 0..=1, default_missing_value = "true")]
    pub file_upload_notifications: Option<bool>,
    /// How long a notification waits to be received, in hours (1 to 48) [default: 1].
    #[arg(long, env = "IRONHUB_FILE_UPLOAD_NOTIFICATION_TTL_HOURS", value_parser = clap::value_parser!(u32).range(1..=48))]
    pub file_upload_notification_ttl_hours: Option<u32>,
    /// How many times a notification is received before it is dropped (1 to 100) [default: 10].
    #[arg(long, env = "IRONHUB_FILE_UPLOAD_MAX_DELIVERY_COUNT", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub file_upload_max_delivery_count: Option<u32>,
}

/// The same settings in the `--config` file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUploadFile {
    pub connection_string: Option<String>,
    pub container: Option<String>,
    pub sas_ttl_hours: Option<u32>,
    pub notifications: Option<bool>,
    pub notification_ttl_hours: Option<u32>,
    pub max_delivery_count: Option<u32>,
}

/// Azure Storage's rule for container names: 3 to 63 lower-case letters, digits and single
/// hyphens, starting and ending with a letter or digit.
fn valid_container(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && !name.contains("--")
}

impl FileUploadArgs {
    /// The hub's file upload settings: flags and environment over the file's `[file_upload]`
    /// table, IoT Hub's defaults for the rest; `None` when no storage account is given.
    pub fn resolve(self, file: FileUploadFile) -> anyhow::Result<Option<FileUploadSettings>> {
        let connection_string = self
            .file_upload_connection_string
            .or(file.connection_string);
        let container = self.file_upload_container.or(file.container);
        let (connection_string, container) = match (connection_string, container) {
            (None, None) => return Ok(None),
            (Some(c), Some(n)) => (c, n),
            _ => anyhow::bail!(
                "file upload needs both a storage connection string and a container \
                 (--file-upload-connection-string and --file-upload-container)"
            ),
        };
        let account = StorageAccount::parse(&connection_string)
            .context("--file-upload-connection-string is not a usable storage connection string")?;
        anyhow::ensure!(
            valid_container(&container),
            "--file-upload-container '{container}' is not a valid container name (3 to 63 \
             lower-case letters, digits and single hyphens)"
        );
        let bounded =
            |value: Option<u32>, range: std::ops::RangeInclusive<u32>, name: &str| match value {
                Some(v) if !range.contains(&v) => Err(anyhow::anyhow!(
                    "file_upload.{name} must be between {} and {}, not {v}",
                    range.start(),
                    range.end()
                )),
                v => Ok(v),
            };
        let mut settings = FileUploadSettings::new(account, container);
        if let Some(h) = bounded(
            self.file_upload_sas_ttl_hours.or(file.sas_ttl_hours),
            1..=24,
            "sas_ttl_hours",
        )? {
            settings.sas_ttl = chrono::TimeDelta::hours(i64::from(h));
        }
        if let Some(h) = bounded(
            self.file_upload_notification_ttl_hours
                .or(file.notification_ttl_hours),
            1..=48,
            "notification_ttl_hours",
        )? {
            settings.notification_ttl = chrono::TimeDelta::hours(i64::from(h));
        }
        if let Some(n) = bounded(
            self.file_upload_max_delivery_count
                .or(file.max_delivery_count),
            1..=100,
            "max_delivery_count",
        )? {
            settings.max_delivery_count = n;
        }
        settings.notifications = self
            .file_upload_notifications
            .or(file.notifications)
            .unwrap_or(false);
        Ok(Some(settings))
    }
}

/// How long the hub waits for storage to describe a blob.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Reads blob properties over HTTP(S), trusting the system's roots and `--trust-ca`.
#[derive(Debug, Clone)]
pub struct HttpBlobStorage(WebClient);

impl HttpBlobStorage {
    pub fn new(trust: &[std::path::PathBuf]) -> anyhow::Result<HttpBlobStorage> {
        Ok(HttpBlobStorage(WebClient::new(trust)?))
    }
}

#[async_trait]
impl BlobStorage for HttpBlobStorage {
    async fn properties(&self, url: &str) -> Result<Option<BlobProperties>, String> {
        let response = self
            .0
            .blob_properties(url, STORAGE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        match response.status {
            404 => Ok(None),
            200..=299 => {
                let header = |name: &str| {
                    response
                        .headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let size = header("content-length")
                    .and_then(|s| s.parse().ok())
                    .ok_or("storage sent no Content-Length")?;
                let last_modified = header("last-modified")
                    .and_then(|s| chrono::DateTime::parse_from_rfc2822(&s).ok())
                    .map(|t| t.with_timezone(&chrono::Utc));
                Ok(Some(BlobProperties {
                    size,
                    last_modified,
                }))
            }
            status => Err(format!("storage answered {status}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AZURITE: &str = "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=https://127.0.0.1:10000/devstoreaccount1";

    #[test]
    fn settings_from_flags_and_file() {
        assert!(
            FileUploadArgs::default()
                .resolve(FileUploadFile::default())
                .unwrap()
                .is_none()
        );
        let file = FileUploadFile {
            connection_string: Some(AZURITE.into()),
            container: Some("uploads".into()),
            notification_ttl_hours: Some(2),
            ..FileUploadFile::default()
        };
        let s = FileUploadArgs {
            file_upload_notifications: Some(true),
            file_upload_max_delivery_count: Some(3),
            ..FileUploadArgs::default()
        }
        .resolve(file.clone())
        .unwrap()
        .unwrap();
        assert_eq!(s.container, "uploads");
        assert_eq!(s.sas_ttl, chrono::TimeDelta::hours(1));
        assert_eq!(s.notification_ttl, chrono::TimeDelta::hours(2));
        assert!(s.notifications);
        assert_eq!(s.max_delivery_count, 3);
        assert_eq!(s.account.blob_host(), "127.0.0.1:10000/devstoreaccount1");

        for bad in [
            FileUploadFile {
                container: None,
                ..file.clone()
            },
            FileUploadFile {
                container: Some("Bad_Name".into()),
                ..file.clone()
            },
            FileUploadFile {
                connection_string: Some("AccountName=x".into()),
                ..file.clone()
            },
            FileUploadFile {
                notification_ttl_hours: Some(49),
                ..file.clone()
            },
        ] {
            assert!(
                FileUploadArgs::default().resolve(bad.clone()).is_err(),
                "{bad:?}"
            );
        }
    }
}
