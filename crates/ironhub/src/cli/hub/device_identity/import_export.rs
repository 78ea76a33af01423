//! `ironhub hub device-identity export|import`: an import or export job (`POST /jobs/create`)
//! with az's flags, printing the job as IoT Hub answers it; `--wait` (ironhub's) follows it
//! (`GET /jobs/{id}`) until it is over.

use std::time::Duration;

use anyhow::bail;
use clap::{ArgAction, Args};
use http::Method;
use ironhub_client::{HubClient, NO_BODY};
use ironhub_wire::hub::ImportExportJob;
use serde_json::Value;

use crate::cli::login::Session;

/// How often `--wait` reads the job, and for how long at most.
const POLL_EVERY: Duration = Duration::from_secs(1);
const WAIT_AT_MOST: Duration = Duration::from_secs(600);

/// `device-identity export`
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The SAS URI of the blob container to write `devices.txt` to (or `file:///dir`).
    #[arg(long = "blob-container-uri", visible_alias = "bcu")]
    pub blob_container_uri: String,
    /// Export the devices' keys too (`--ik` alone means true).
    #[arg(
        long = "include-keys",
        visible_alias = "ik",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub include_keys: bool,
    /// How the hub reaches the storage: only `key` (the SAS in the URI) is supported.
    #[arg(long = "storage-authentication-type")]
    pub storage_authentication_type: Option<String>,
    /// Wait until the job is over, and print it as it ended.
    #[arg(long)]
    pub wait: bool,
}

/// `device-identity import`
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The SAS URI of the blob container holding `devices.txt` (or `file:///dir`).
    #[arg(long = "input-blob-container-uri", visible_alias = "ibcu")]
    pub input_blob_container_uri: String,
    /// The SAS URI of the blob container `importErrors.log` goes to (or `file:///dir`).
    #[arg(long = "output-blob-container-uri", visible_alias = "obcu")]
    pub output_blob_container_uri: String,
    /// How the hub reaches the storage: only `key` (the SAS in the URI) is supported.
    #[arg(long = "storage-authentication-type")]
    pub storage_authentication_type: Option<String>,
    /// Wait until the job is over, and print it as it ended.
    #[arg(long)]
    pub wait: bool,
}

/// az's `key`/`identity` in IoT Hub's words.
fn auth_type(given: Option<&str>) -> Option<String> {
    given.map(|t| match t.to_ascii_lowercase().as_str() {
        "key" | "keybased" => "keyBased".to_owned(),
        "identity" | "identitybased" => "identityBased".to_owned(),
        _ => t.to_owned(),
    })
}

pub async fn export(session: &Session, args: &ExportArgs) -> anyhow::Result<Value> {
    let request = ImportExportJob {
        job_type: "export".into(),
        output_blob_container_uri: Some(args.blob_container_uri.clone()),
        exclude_keys_in_export: Some(!args.include_keys),
        storage_authentication_type: auth_type(args.storage_authentication_type.as_deref()),
        ..ImportExportJob::default()
    };
    create(&session.client()?, &request, args.wait).await
}

pub async fn import(session: &Session, args: &ImportArgs) -> anyhow::Result<Value> {
    let request = ImportExportJob {
        job_type: "import".into(),
        input_blob_container_uri: Some(args.input_blob_container_uri.clone()),
        output_blob_container_uri: Some(args.output_blob_container_uri.clone()),
        storage_authentication_type: auth_type(args.storage_authentication_type.as_deref()),
        ..ImportExportJob::default()
    };
    create(&session.client()?, &request, args.wait).await
}

async fn create(
    client: &HubClient,
    request: &ImportExportJob,
    wait: bool,
) -> anyhow::Result<Value> {
    let mut job: ImportExportJob = client
        .request(Method::POST, "/jobs/create", &[], Some(request), None)
        .await?;
    if wait {
        let path = format!("/jobs/{}", job.job_id);
        let deadline = tokio::time::Instant::now() + WAIT_AT_MOST;
        while !matches!(job.status.as_str(), "completed" | "failed" | "cancelled") {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "job '{}' is still {} after {} s",
                    job.job_id,
                    job.status,
                    WAIT_AT_MOST.as_secs()
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
            job = client
                .request(Method::GET, &path, &[], NO_BODY, None)
                .await?;
        }
    }
    Ok(serde_json::to_value(job)?)
}
