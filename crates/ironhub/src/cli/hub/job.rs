//! `ironhub hub job create|show|list|cancel`: IoT Hub's scheduled jobs (`/jobs/v2`) with the
//! flags of `az iot hub job`, through the REST API only.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use http::{HeaderName, HeaderValue, Method};
use ironhub_client::{NO_BODY, device_path};
use ironhub_wire::hub::{JobRequest, JobResponse, MethodRequest};
use serde_json::Value;

use crate::cli::args::json_arg;
use crate::cli::login::Session;

/// How long one page of `list` may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// `--job-id`
#[derive(Debug, Clone, Args)]
pub struct JobIdArgs {
    /// The job's id.
    #[arg(long = "job-id", visible_alias = "job", short = 'j')]
    pub job_id: String,
}

/// What `create` takes.
#[derive(Debug, Clone, Args)]
pub struct CreateFlags {
    /// `scheduleUpdate` (a twin update) or `scheduleDeviceMethod`.
    #[arg(long = "job-type", visible_alias = "jt")]
    pub job_type: String,
    /// Which devices it runs on: the WHERE part of a twin query (e.g. "tags.building = 43").
    #[arg(long = "query-condition", visible_alias = "q")]
    pub query_condition: String,
    /// The twin patch of a `scheduleUpdate` job: tags and/or `properties.desired` (inline
    /// JSON or a file path).
    #[arg(long = "twin-patch", visible_alias = "patch")]
    pub twin_patch: Option<String>,
    /// The method a `scheduleDeviceMethod` job invokes.
    #[arg(long = "method-name", visible_alias = "mn")]
    pub method_name: Option<String>,
    /// The method's payload (JSON, inline or a file path).
    #[arg(long = "method-payload", visible_alias = "mp")]
    pub method_payload: Option<String>,
    /// Seconds to wait for each device's answer (5-300).
    #[arg(
        long = "method-response-timeout",
        visible_alias = "mrt",
        default_value_t = 30
    )]
    pub method_response_timeout: i64,
    /// Seconds to wait for each device to connect (0-300).
    #[arg(
        long = "method-connect-timeout",
        visible_alias = "mct",
        default_value_t = 30
    )]
    pub method_connect_timeout: i64,
    /// When the job starts (ISO 8601; now by default).
    #[arg(long = "start-time", visible_alias = "start")]
    pub start_time: Option<String>,
    /// The job's maximum run time in seconds.
    #[arg(long = "ttl", default_value_t = 3600)]
    pub ttl: i64,
    /// Wait until the job is over and print it then.
    #[arg(long = "wait", short = 'w')]
    pub wait: bool,
    /// Seconds between two reads of the job while waiting.
    #[arg(
        long = "poll-interval",
        visible_alias = "interval",
        default_value_t = 10
    )]
    pub poll_interval: u64,
    /// The most seconds to wait.
    #[arg(
        long = "poll-duration",
        visible_alias = "duration",
        default_value_t = 600
    )]
    pub poll_duration: u64,
}

/// `ironhub hub job <command>`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Schedule a twin update or a direct method on the devices a query condition selects.
    Create {
        #[command(flatten)]
        id: JobIdArgs,
        #[command(flatten)]
        flags: CreateFlags,
    },
    /// Show a job with its device statistics.
    Show {
        #[command(flatten)]
        id: JobIdArgs,
    },
    /// List the hub's jobs.
    List {
        /// Only jobs of this type (`scheduleUpdate`/`scheduleUpdateTwin`, `scheduleDeviceMethod`).
        #[arg(long = "job-type", visible_alias = "jt")]
        job_type: Option<String>,
        /// Only jobs in this status (queued, scheduled, running, completed, failed, cancelled).
        #[arg(long = "job-status", visible_alias = "js")]
        job_status: Option<String>,
        /// At most this many jobs.
        #[arg(long = "top")]
        top: Option<usize>,
    },
    /// Cancel a job that is not over.
    Cancel {
        #[command(flatten)]
        id: JobIdArgs,
    },
}

/// az's job type names, as IoT Hub names them.
fn job_type(name: &str) -> &str {
    match name {
        "scheduleUpdate" => "scheduleUpdateTwin",
        other => other,
    }
}

/// `/jobs/v2/{id}`, the id percent-encoded as one path segment.
fn job_path(id: &str) -> String {
    let encoded = device_path(id);
    format!("/jobs/v2/{}", &encoded["/devices/".len()..])
}

fn request(id: &str, flags: &CreateFlags) -> anyhow::Result<JobRequest> {
    let job_type = job_type(&flags.job_type).to_owned();
    let mut request = JobRequest {
        job_id: Some(id.to_owned()),
        query_condition: Some(flags.query_condition.clone()),
        start_time: Some(
            flags
                .start_time
                .clone()
                .unwrap_or_else(|| ironhub_wire::time::azure_time(Some(chrono::Utc::now()))),
        ),
        max_execution_time_in_seconds: Some(flags.ttl),
        ..JobRequest::default()
    };
    match job_type.as_str() {
        "scheduleUpdateTwin" => {
            let patch = flags
                .twin_patch
                .as_deref()
                .context("a scheduleUpdate job needs --twin-patch")?;
            let mut patch = json_arg("--twin-patch", patch)?;
            if let Value::Object(map) = &mut patch {
                map.entry("etag").or_insert_with(|| "*".into());
            }
            request.update_twin = Some(patch);
        }
        "scheduleDeviceMethod" => {
            let name = flags
                .method_name
                .clone()
                .context("a scheduleDeviceMethod job needs --method-name")?;
            let payload = match &flags.method_payload {
                Some(text) => json_arg("--method-payload", text)?,
                None => Value::Null,
            };
            request.cloud_to_device_method = Some(MethodRequest {
                method_name: Some(name),
                payload,
                response_timeout_in_seconds: Some(flags.method_response_timeout),
                connect_timeout_in_seconds: Some(flags.method_connect_timeout),
            });
        }
        other => bail!("--job-type must be scheduleUpdate or scheduleDeviceMethod, not '{other}'"),
    }
    request.job_type = Some(job_type);
    Ok(request)
}

fn is_over(job: &JobResponse) -> bool {
    matches!(job.status.as_str(), "completed" | "failed" | "cancelled")
}

/// Runs an `ironhub hub job` command and returns what it prints.
pub async fn run(session: &Session, command: &JobCommand) -> anyhow::Result<Value> {
    let client = session.client()?;
    let job: JobResponse = match command {
        JobCommand::Create { id, flags } => {
            let body = request(&id.job_id, flags)?;
            let path = job_path(&id.job_id);
            let mut job: JobResponse = client
                .request(Method::PUT, &path, &[], Some(&body), None)
                .await?;
            if flags.wait {
                let deadline =
                    tokio::time::Instant::now() + Duration::from_secs(flags.poll_duration);
                while !is_over(&job) {
                    if tokio::time::Instant::now() >= deadline {
                        bail!(
                            "job '{}' is still {} after --poll-duration",
                            job.job_id,
                            job.status
                        );
                    }
                    tokio::time::sleep(Duration::from_secs(flags.poll_interval.max(1))).await;
                    job = client
                        .request(Method::GET, &path, &[], NO_BODY, None)
                        .await?;
                }
            }
            job
        }
        JobCommand::Show { id } => {
            client
                .request(Method::GET, &job_path(&id.job_id), &[], NO_BODY, None)
                .await?
        }
        JobCommand::Cancel { id } => {
            let path = format!("{}/cancel", job_path(&id.job_id));
            client
                .request(Method::POST, &path, &[], NO_BODY, None)
                .await?
        }
        JobCommand::List {
            job_type: kind,
            job_status,
            top,
        } => {
            let mut query = Vec::new();
            if let Some(kind) = kind {
                query.push(("jobType", job_type(kind).to_owned()));
            }
            if let Some(status) = job_status {
                query.push(("jobStatus", status.clone()));
            }
            let mut jobs = Vec::new();
            let mut continuation: Option<String> = None;
            loop {
                let mut headers = Vec::new();
                if let Some(token) = &continuation {
                    headers.push((
                        HeaderName::from_static("x-ms-continuation"),
                        HeaderValue::from_str(token)?,
                    ));
                }
                let page = client
                    .request_raw(
                        Method::GET,
                        "/jobs/v2/query",
                        &query,
                        headers,
                        Default::default(),
                        PAGE_TIMEOUT,
                    )
                    .await?;
                let body: Value = serde_json::from_slice(&page.body)
                    .context("the hub's answer is not a page of jobs")?;
                if let Some(items) = body.get("items").and_then(Value::as_array) {
                    jobs.extend(items.iter().cloned());
                }
                continuation = body
                    .get("continuationToken")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if continuation.is_none() || top.is_some_and(|t| jobs.len() >= t) {
                    break;
                }
            }
            if let Some(top) = top {
                jobs.truncate(*top);
            }
            return Ok(Value::Array(jobs));
        }
    };
    Ok(serde_json::to_value(job)?)
}
