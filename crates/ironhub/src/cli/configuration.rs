//! `ironhub hub configuration …` and `ironhub edge deployment …`: automatic device management
//! configurations and IoT Edge deployments (both `/configurations/{id}`), with the flags of
//! `az iot hub configuration` and `az iot edge deployment`; and `ironhub edge set-modules`.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use http::Method;
use ironhub_client::{NO_BODY, device_path};
use ironhub_wire::hub::{Configuration, ConfigurationContent};
use serde_json::{Value, json};

use crate::cli::args::json_arg;
use crate::cli::login::{CommonArgs, Session};
use crate::cli::output;

/// Which of the two command groups runs: they differ in the id flag and the content kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// `hub configuration`: `deviceContent` or `moduleContent`.
    Configuration,
    /// `edge deployment`: `modulesContent`.
    Deployment,
}

/// `--config-id/-c` (hub configuration) or `--deployment-id/-d` (edge deployment).
#[derive(Debug, Clone, Args)]
pub struct ConfigIdArgs {
    /// The configuration's id (lower case).
    #[arg(long = "config-id", short = 'c')]
    pub id: String,
}

/// `--deployment-id/-d`
#[derive(Debug, Clone, Args)]
pub struct DeploymentIdArgs {
    /// The deployment's id (lower case).
    #[arg(long = "deployment-id", short = 'd')]
    pub id: String,
}

/// What `create` sets and `update` may change.
#[derive(Debug, Clone, Args)]
pub struct TargetFlags {
    /// Which twins it targets, in IoT Hub's query language (e.g. "tags.building=43").
    #[arg(long = "target-condition", visible_alias = "tc", short = 't')]
    pub target_condition: Option<String>,
    /// Its weight against the others targeting the same twin (higher wins).
    #[arg(long = "priority", visible_alias = "pri")]
    pub priority: Option<i64>,
    /// Labels, a JSON object of strings (inline or a file path).
    #[arg(long = "labels", visible_alias = "lab")]
    pub labels: Option<String>,
    /// Custom metric queries, `{"queries": {…}}` or `{"metrics": {"queries": {…}}}`.
    #[arg(long = "metrics", short = 'm')]
    pub metrics: Option<String>,
}

impl TargetFlags {
    /// Sets the flags given on `config`.
    fn apply(&self, config: &mut Configuration) -> anyhow::Result<()> {
        if let Some(t) = &self.target_condition {
            config.target_condition.clone_from(t);
        }
        if let Some(p) = self.priority {
            config.priority = p;
        }
        if let Some(l) = &self.labels {
            config.labels = Some(labels_of(l)?);
        }
        if let Some(m) = &self.metrics {
            config.metrics.queries = metrics_of(m)?;
        }
        Ok(())
    }
}

/// The flags of `create` both groups share.
#[derive(Debug, Clone, Args)]
pub struct CreateFlags {
    /// The content: inline JSON or a file path (`{"deviceContent": …}`,
    /// `{"modulesContent": …}`, or either inside `{"content": …}`).
    #[arg(long = "content", short = 'k')]
    pub content: String,
    #[command(flatten)]
    pub target: TargetFlags,
}

/// The flags of `update`: what IoT Hub lets change.
#[derive(Debug, Clone, Args)]
pub struct UpdateFlags {
    #[command(flatten)]
    pub target: TargetFlags,
    /// The etag it must still have [default: the one just read].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `--metric-type`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum MetricType {
    /// A custom metric (`metrics.queries`).
    #[default]
    User,
    /// A system metric (`systemMetrics.queries`: targetedCount, appliedCount, …).
    System,
}

/// The flags of `show-metric`.
#[derive(Debug, Clone, Args)]
pub struct MetricFlags {
    /// The metric's name.
    #[arg(long = "metric-id", short = 'm')]
    pub metric_id: String,
    #[arg(long = "metric-type", visible_alias = "mt", value_enum, default_value_t = MetricType::User)]
    pub metric_type: MetricType,
}

/// `--top` of `list`.
#[derive(Debug, Clone, Args)]
pub struct ListFlags {
    /// At most this many.
    #[arg(long = "top")]
    pub top: Option<usize>,
}

/// `--etag` of `delete`.
#[derive(Debug, Clone, Args)]
pub struct DeleteFlags {
    /// The etag it must still have [default: any, "*"].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `ironhub hub configuration <command>`
#[derive(Debug, Subcommand)]
pub enum ConfigurationCommand {
    /// Create a configuration.
    Create {
        #[command(flatten)]
        id: ConfigIdArgs,
        #[command(flatten)]
        flags: CreateFlags,
    },
    /// Show a configuration with its metrics.
    Show {
        #[command(flatten)]
        id: ConfigIdArgs,
    },
    /// List the configurations (not deployments).
    List {
        #[command(flatten)]
        flags: ListFlags,
    },
    /// Change a configuration's target condition, priority, labels or metrics.
    Update {
        #[command(flatten)]
        id: ConfigIdArgs,
        #[command(flatten)]
        flags: UpdateFlags,
    },
    /// Delete a configuration.
    Delete {
        #[command(flatten)]
        id: ConfigIdArgs,
        #[command(flatten)]
        flags: DeleteFlags,
    },
    /// Run a metric's query and print the twins it counts.
    #[command(name = "show-metric")]
    ShowMetric {
        #[command(flatten)]
        id: ConfigIdArgs,
        #[command(flatten)]
        flags: MetricFlags,
    },
}

/// `ironhub edge deployment <command>`
#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Create a deployment.
    Create {
        #[command(flatten)]
        id: DeploymentIdArgs,
        #[command(flatten)]
        flags: CreateFlags,
        /// A layered deployment: its content sets paths below `properties.desired` (such as
        /// `properties.desired.modules.sensor`) on top of the base deployment.
        #[arg(long = "layered")]
        layered: bool,
    },
    /// Show a deployment with its metrics.
    Show {
        #[command(flatten)]
        id: DeploymentIdArgs,
    },
    /// List the deployments.
    List {
        #[command(flatten)]
        flags: ListFlags,
    },
    /// Change a deployment's target condition, priority, labels or metrics.
    Update {
        #[command(flatten)]
        id: DeploymentIdArgs,
        #[command(flatten)]
        flags: UpdateFlags,
    },
    /// Delete a deployment.
    Delete {
        #[command(flatten)]
        id: DeploymentIdArgs,
        #[command(flatten)]
        flags: DeleteFlags,
    },
    /// Run a metric's query and print the devices it counts.
    #[command(name = "show-metric")]
    ShowMetric {
        #[command(flatten)]
        id: DeploymentIdArgs,
        #[command(flatten)]
        flags: MetricFlags,
    },
}

/// `ironhub edge`
#[derive(Debug, Args)]
pub struct EdgeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: EdgeCommand,
}

/// `ironhub edge <command>`
#[derive(Debug, Subcommand)]
pub enum EdgeCommand {
    /// Apply a deployment manifest to one IoT Edge device (its `$edgeAgent` and `$edgeHub`).
    #[command(name = "set-modules")]
    SetModules {
        /// The IoT Edge device.
        #[arg(long = "device-id", short = 'd')]
        device_id: String,
        /// The manifest: inline JSON or a file path (`{"modulesContent": …}` or
        /// `{"content": {"modulesContent": …}}`).
        #[arg(long = "content", short = 'k')]
        content: String,
    },
    /// Manage IoT Edge deployments at scale.
    Deployment {
        #[command(subcommand)]
        command: DeploymentCommand,
    },
}

/// Runs an `ironhub edge` command.
pub async fn run_edge(args: EdgeArgs) -> anyhow::Result<()> {
    let session = Session::open(&args.common).await?;
    let result = match args.command {
        EdgeCommand::SetModules { device_id, content } => {
            let content = content_of(&content, Flavor::Deployment)?;
            let path = format!("{}/applyConfigurationContent", device_path(&device_id));
            session
                .client()?
                .request::<_, Value>(Method::POST, &path, &[], Some(&content), None)
                .await?;
            // az prints the modules content it applied.
            Some(serde_json::to_value(&content)?)
        }
        EdgeCommand::Deployment { command } => {
            let (op, flavor) = (deployment_op(command), Flavor::Deployment);
            run_op(&session, op, flavor).await?
        }
    };
    match result {
        Some(v) => output::print(&v, args.common.output),
        None => Ok(()),
    }
}

/// Runs an `ironhub hub configuration` command; `None` when it prints nothing.
pub async fn run_configuration(
    session: &Session,
    command: ConfigurationCommand,
) -> anyhow::Result<Option<Value>> {
    let op = match command {
        ConfigurationCommand::Create { id, flags } => Op::Create(id.id, flags),
        ConfigurationCommand::Show { id } => Op::Show(id.id),
        ConfigurationCommand::List { flags } => Op::List(flags),
        ConfigurationCommand::Update { id, flags } => Op::Update(id.id, flags),
        ConfigurationCommand::Delete { id, flags } => Op::Delete(id.id, flags),
        ConfigurationCommand::ShowMetric { id, flags } => Op::ShowMetric(id.id, flags),
    };
    run_op(session, op, Flavor::Configuration).await
}

/// One command of either group.
enum Op {
    Create(String, CreateFlags),
    Show(String),
    List(ListFlags),
    Update(String, UpdateFlags),
    Delete(String, DeleteFlags),
    ShowMetric(String, MetricFlags),
}

fn deployment_op(command: DeploymentCommand) -> Op {
    match command {
        DeploymentCommand::Create { id, flags, .. } => Op::Create(id.id, flags),
        DeploymentCommand::Show { id } => Op::Show(id.id),
        DeploymentCommand::List { flags } => Op::List(flags),
        DeploymentCommand::Update { id, flags } => Op::Update(id.id, flags),
        DeploymentCommand::Delete { id, flags } => Op::Delete(id.id, flags),
        DeploymentCommand::ShowMetric { id, flags } => Op::ShowMetric(id.id, flags),
    }
}

/// `/configurations/{id}`, the id percent-encoded as one path segment.
fn config_path(id: &str) -> String {
    let encoded = device_path(id);
    format!("/configurations/{}", &encoded["/devices/".len()..])
}

/// The content a flag gives, unwrapped from `{"content": …}`, of the group's kind.
fn content_of(text: &str, flavor: Flavor) -> anyhow::Result<ConfigurationContent> {
    let mut value = json_arg("--content", text)?;
    if let Some(inner) = value.get("content").cloned() {
        value = inner;
    }
    let content: ConfigurationContent =
        serde_json::from_value(value).context("--content is not a configuration's content")?;
    let ok = match flavor {
        Flavor::Configuration => {
            content.modules_content.is_none()
                && (content.device_content.is_some() || content.module_content.is_some())
        }
        Flavor::Deployment => content.modules_content.is_some(),
    };
    if !ok {
        match flavor {
            Flavor::Configuration => {
                bail!(
                    "--content must hold deviceContent or moduleContent (deployments are `ironhub edge deployment`)"
                )
            }
            Flavor::Deployment => bail!("--content must hold modulesContent"),
        }
    }
    Ok(content)
}

/// `--labels`: a JSON object of strings.
fn labels_of(text: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    serde_json::from_value(json_arg("--labels", text)?)
        .context("--labels must be a JSON object of strings")
}

/// `--metrics`: `{"queries": …}` or `{"metrics": {"queries": …}}`.
fn metrics_of(text: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut value = json_arg("--metrics", text)?;
    if let Some(inner) = value.get("metrics").cloned() {
        value = inner;
    }
    let queries = value.get("queries").cloned().unwrap_or(Value::Null);
    serde_json::from_value(queries).context("--metrics must be {\"queries\": {name: query, …}}")
}

/// Whether a configuration belongs to the group (deployments have `modulesContent`).
fn of_flavor(config: &Configuration, flavor: Flavor) -> bool {
    config.content.modules_content.is_some() == (flavor == Flavor::Deployment)
}

async fn run_op(session: &Session, op: Op, flavor: Flavor) -> anyhow::Result<Option<Value>> {
    let client = session.client()?;
    let config: Configuration = match op {
        Op::Create(id, flags) => {
            let mut body = Configuration {
                id: id.clone(),
                content: content_of(&flags.content, flavor)?,
                ..Configuration::default()
            };
            flags.target.apply(&mut body)?;
            client
                .request(Method::PUT, &config_path(&id), &[], Some(&body), None)
                .await?
        }
        Op::Show(id) => get(session, &id).await?,
        Op::List(flags) => {
            let all: Vec<Configuration> = client
                .request(Method::GET, "/configurations", &[], NO_BODY, None)
                .await?;
            let mut mine: Vec<Configuration> =
                all.into_iter().filter(|c| of_flavor(c, flavor)).collect();
            if let Some(top) = flags.top {
                mine.truncate(top);
            }
            return Ok(Some(serde_json::to_value(mine)?));
        }
        Op::Update(id, flags) => {
            let mut body = get(session, &id).await?;
            let etag = flags
                .etag
                .clone()
                .or_else(|| body.etag.clone())
                .unwrap_or_else(|| "*".into());
            flags.target.apply(&mut body)?;
            client
                .request(
                    Method::PUT,
                    &config_path(&id),
                    &[],
                    Some(&body),
                    Some(&etag),
                )
                .await?
        }
        Op::Delete(id, flags) => {
            let etag = flags.etag.as_deref().unwrap_or("*");
            client
                .request::<_, Value>(Method::DELETE, &config_path(&id), &[], NO_BODY, Some(etag))
                .await?;
            return Ok(None);
        }
        Op::ShowMetric(id, flags) => {
            let config = get(session, &id).await?;
            let queries = match flags.metric_type {
                MetricType::User => &config.metrics.queries,
                MetricType::System => &config.system_metrics.queries,
            };
            let Some(query) = queries.get(&flags.metric_id) else {
                bail!(
                    "the {} metric '{}' is not defined for '{id}'",
                    match flags.metric_type {
                        MetricType::User => "user",
                        MetricType::System => "system",
                    },
                    flags.metric_id
                );
            };
            let result = client.query_twins(query, None).await?;
            return Ok(Some(json!({
                "metric": flags.metric_id,
                "query": query,
                "result": result,
            })));
        }
    };
    Ok(Some(serde_json::to_value(config)?))
}

async fn get(session: &Session, id: &str) -> anyhow::Result<Configuration> {
    Ok(session
        .client()?
        .request(Method::GET, &config_path(id), &[], NO_BODY, None)
        .await?)
}
