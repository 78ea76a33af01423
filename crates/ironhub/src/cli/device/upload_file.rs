//! `ironhub device upload-file`: uploads a file as the device does, as
//! `az iot device upload-file` does it: with the device's key (read from the registry), ask the
//! hub where to put it (`POST /devices/{id}/files`), `PUT` it to that blob of the hub's Azure
//! Storage account with the SAS the hub gave, and tell the hub how it went
//! (`POST /devices/{id}/files/notifications`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use ironhub_auth::sas::url_encode;
use ironhub_client::WebClient;

use crate::cli::login::Session;

/// How long the upload to storage may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// `device upload-file`
#[derive(Debug, Clone, Args)]
pub struct UploadFileArgs {
    /// Target device.
    #[arg(long = "device-id", short = 'd')]
    pub device_id: String,
    /// The file to upload (its name becomes the blob's, under the device id).
    #[arg(long = "file-path", visible_alias = "fp")]
    pub file_path: PathBuf,
    /// The file's MIME type.
    #[arg(long = "content-type", visible_alias = "ct")]
    pub content_type: String,
}

/// Uploads the file; prints nothing on success (as az).
pub async fn run(session: &Session, args: &UploadFileArgs) -> anyhow::Result<()> {
    let content = std::fs::read(&args.file_path)
        .with_context(|| format!("cannot read {}", args.file_path.display()))?;
    let name = args
        .file_path
        .file_name()
        .and_then(|n| n.to_str())
        .context("--file-path must name a file")?;
    let service = session.client()?;
    let device = service.get_device(&args.device_id).await?;
    let key = device
        .authentication
        .symmetric_key
        .primary_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .with_context(|| {
            format!(
                "the device '{}' has no symmetric key: upload-file acts as the device with its key",
                args.device_id
            )
        })?;
    let as_device = service.as_device(&args.device_id, key)?;
    let info = as_device
        .start_file_upload(&args.device_id, name)
        .await
        .context("the hub gave no place to upload to")?;
    let blob: Vec<String> = info.blob_name.split('/').map(url_encode).collect();
    let url = format!(
        "https://{}/{}/{}{}",
        info.host_name,
        url_encode(&info.container_name),
        blob.join("/"),
        info.sas_token
    );
    let storage = WebClient::new(&session.ca_files)?;
    let uploaded = storage
        .put_blob(&url, content, &args.content_type, UPLOAD_TIMEOUT)
        .await;
    // As az reports it: storage's status and reason, or 500 "Storage upload failed.".
    let failure = match &uploaded {
        Ok(r) if (200..300).contains(&r.status) => None,
        Ok(r) => Some(format!(
            "storage answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
                .chars()
                .take(500)
                .collect::<String>()
        )),
        Err(e) => Some(e.to_string()),
    };
    let (status, description) = match (&uploaded, &failure) {
        (Ok(r), None) => (r.status, r.reason().to_owned()),
        _ => (500, "Storage upload failed.".to_owned()),
    };
    as_device
        .complete_file_upload(
            &args.device_id,
            &info.correlation_id,
            failure.is_none(),
            status,
            &description,
        )
        .await
        .context("cannot tell the hub how the upload went")?;
    if let Some(why) = failure {
        bail!("the upload to storage failed: {why}");
    }
    Ok(())
}
