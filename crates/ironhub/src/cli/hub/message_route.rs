//! `ironhub hub message-route …` and `message-enrichment …`: the hub's routes, fallback
//! route and enrichments, with the command and flag names of `az iot hub message-route` and
//! `az iot hub message-enrichment`. Each change reads the routing document, edits it and
//! writes it back conditioned on the etag it read, so concurrent edits are not lost; the
//! server validates the result (a route naming a missing endpoint, a bad condition: 400,
//! nothing changed).

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use ironhub_client::HubClient;
use ironhub_wire::hub::{
    Enrichment, Route, RoutingConfig, RoutingSource, TestAllRoutesInput, TestMessage,
    TestRouteInput,
};
use serde_json::Value;

use crate::cli::login::Session;

/// `ironhub hub message-route <command>`
#[derive(Debug, Subcommand)]
pub enum MessageRouteCommand {
    /// Add a route.
    Create(CreateArgs),
    /// List the routes (of one source with --source).
    List(ListArgs),
    /// Show a route.
    Show(NameArgs),
    /// Change a route.
    Update(UpdateArgs),
    /// Delete a route (or every route of --source).
    Delete(DeleteArgs),
    /// Test a route (--route-name) or every route (of --source) against a sample message.
    Test(TestArgs),
    /// Show or set the fallback route.
    Fallback {
        #[command(subcommand)]
        command: FallbackCommand,
    },
}

/// The hub's name, only checked against the login (as the other `hub` commands).
#[derive(Debug, Clone, Args)]
pub struct HubName {
    #[arg(long = "hub-name", short = 'n', value_name = "HUB_NAME")]
    pub hub_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long = "route-name", visible_alias = "rn")]
    pub route_name: String,
    /// DeviceMessages, TwinChangeEvents, DeviceLifecycleEvents or DeviceConnectionStateEvents.
    #[arg(long = "source", short = 's', visible_alias = "source-type")]
    pub source: String,
    #[arg(long = "endpoint-name", visible_alias = "en")]
    pub endpoint_name: String,
    /// The routing query [default: true].
    #[arg(long = "condition", short = 'c')]
    pub condition: Option<String>,
    #[arg(long = "enabled", short = 'e', default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    #[command(flatten)]
    pub hub: HubName,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long = "source", short = 's', visible_alias = "source-type")]
    pub source: Option<String>,
    #[command(flatten)]
    pub hub: HubName,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    #[arg(long = "route-name", visible_alias = "rn")]
    pub route_name: String,
    #[command(flatten)]
    pub hub: HubName,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[arg(long = "route-name", visible_alias = "rn")]
    pub route_name: String,
    #[arg(long = "source", short = 's', visible_alias = "source-type")]
    pub source: Option<String>,
    #[arg(long = "endpoint-name", visible_alias = "en")]
    pub endpoint_name: Option<String>,
    #[arg(long = "condition", short = 'c')]
    pub condition: Option<String>,
    #[arg(long = "enabled", short = 'e', action = clap::ArgAction::Set)]
    pub enabled: Option<bool>,
    #[command(flatten)]
    pub hub: HubName,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[arg(long = "route-name", visible_alias = "rn")]
    pub route_name: Option<String>,
    #[arg(long = "source", short = 's', visible_alias = "source-type")]
    pub source: Option<String>,
    #[command(flatten)]
    pub hub: HubName,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[arg(long = "route-name", visible_alias = "rn")]
    pub route_name: Option<String>,
    #[arg(long = "source", short = 's', visible_alias = "source-type")]
    pub source: Option<String>,
    /// The message body.
    #[arg(long = "body", short = 'b')]
    pub body: Option<String>,
    /// Application properties: a JSON object or `k1=v1;k2=v2`.
    #[arg(long = "app-properties", visible_alias = "ap")]
    pub app_properties: Option<String>,
    /// System properties (`contentType`, `contentEncoding`, …): a JSON object or `k1=v1;k2=v2`.
    #[arg(long = "system-properties", visible_alias = "sp")]
    pub system_properties: Option<String>,
    #[command(flatten)]
    pub hub: HubName,
}

/// `ironhub hub message-route fallback <command>`
#[derive(Debug, Subcommand)]
pub enum FallbackCommand {
    /// Show the fallback route.
    Show(HubName),
    /// Enable or disable the fallback route.
    Set(FallbackSetArgs),
}

#[derive(Debug, Args)]
pub struct FallbackSetArgs {
    #[arg(long = "enabled", short = 'e', action = clap::ArgAction::Set)]
    pub enabled: bool,
    #[command(flatten)]
    pub hub: HubName,
}

/// `ironhub hub message-enrichment <command>`
#[derive(Debug, Subcommand)]
pub enum MessageEnrichmentCommand {
    /// Add an enrichment: an application property stamped on messages to its endpoints.
    Create(EnrichmentArgs),
    /// List the enrichments.
    List(HubName),
    /// Change an enrichment's value and endpoints.
    Update(EnrichmentArgs),
    /// Delete an enrichment.
    Delete(EnrichmentKey),
}

#[derive(Debug, Args)]
pub struct EnrichmentArgs {
    #[arg(long = "key", short = 'k')]
    pub key: String,
    /// A static value, `$twin.…` or `$iothubname`.
    #[arg(long = "value", short = 'v')]
    pub value: String,
    /// The endpoints (space-separated).
    #[arg(long = "endpoints", short = 'e', num_args = 1.., required = true)]
    pub endpoints: Vec<String>,
    #[command(flatten)]
    pub hub: HubName,
}

#[derive(Debug, Args)]
pub struct EnrichmentKey {
    #[arg(long = "key", short = 'k')]
    pub key: String,
    #[command(flatten)]
    pub hub: HubName,
}

fn source(name: &str) -> anyhow::Result<RoutingSource> {
    RoutingSource::parse(name).map_err(anyhow::Error::msg)
}

fn find<'a>(config: &'a mut RoutingConfig, name: &str) -> anyhow::Result<&'a mut Route> {
    config
        .routes
        .iter_mut()
        .find(|r| r.name.eq_ignore_ascii_case(name))
        .with_context(|| format!("there is no route named '{name}'"))
}

/// Reads the document, lets `edit` change it, writes it back on the etag read.
pub(crate) async fn edit(
    client: &HubClient,
    edit: impl FnOnce(&mut RoutingConfig) -> anyhow::Result<()>,
) -> anyhow::Result<RoutingConfig> {
    let (mut config, etag) = client.get_routing().await?;
    edit(&mut config)?;
    Ok(client
        .put_routing(&config, Some(etag.as_deref().unwrap_or("*")))
        .await?)
}

/// `k1=v1;k2=v2` or a JSON object.
fn properties(text: Option<&str>) -> anyhow::Result<BTreeMap<String, String>> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    if text.starts_with('{') {
        let map: BTreeMap<String, Value> =
            serde_json::from_str(text).context("the properties are not a JSON object")?;
        return Ok(map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect());
    }
    text.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("'{pair}' is not key=value"))?;
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn to_value<T: serde::Serialize>(v: &T) -> anyhow::Result<Option<Value>> {
    Ok(Some(serde_json::to_value(v)?))
}

/// Runs a `message-route` command; `None` when it prints nothing (delete).
pub async fn run(
    session: &Session,
    command: &MessageRouteCommand,
) -> anyhow::Result<Option<Value>> {
    let client = session.client()?;
    match command {
        MessageRouteCommand::Create(a) => {
            let route = Route {
                name: a.route_name.clone(),
                source: source(&a.source)?,
                condition: Some(a.condition.clone().unwrap_or_else(|| "true".into())),
                endpoint_names: vec![a.endpoint_name.clone()],
                is_enabled: a.enabled,
            };
            let config = edit(&client, |c| {
                if c.routes
                    .iter()
                    .any(|r| r.name.eq_ignore_ascii_case(&route.name))
                {
                    bail!("a route named '{}' exists already", route.name);
                }
                c.routes.push(route.clone());
                Ok(())
            })
            .await?;
            to_value(&config.routes)
        }
        MessageRouteCommand::List(a) => {
            let (config, _) = client.get_routing().await?;
            let wanted = a.source.as_deref().map(source).transpose()?;
            let routes: Vec<&Route> = config
                .routes
                .iter()
                .filter(|r| wanted.is_none_or(|s| r.source == s))
                .collect();
            to_value(&routes)
        }
        MessageRouteCommand::Show(a) => {
            let (mut config, _) = client.get_routing().await?;
            let route = find(&mut config, &a.route_name)?.clone();
            to_value(&route)
        }
        MessageRouteCommand::Update(a) => {
            let new_source = a.source.as_deref().map(source).transpose()?;
            let config = edit(&client, |c| {
                let route = find(c, &a.route_name)?;
                if let Some(s) = new_source {
                    route.source = s;
                }
                if let Some(e) = &a.endpoint_name {
                    route.endpoint_names = vec![e.clone()];
                }
                if let Some(cond) = &a.condition {
                    route.condition = Some(cond.clone());
                }
                if let Some(enabled) = a.enabled {
                    route.is_enabled = enabled;
                }
                Ok(())
            })
            .await?;
            let mut config = config;
            to_value(find(&mut config, &a.route_name)?)
        }
        MessageRouteCommand::Delete(a) => {
            let wanted = a.source.as_deref().map(source).transpose()?;
            edit(&client, |c| {
                let before = c.routes.len();
                c.routes.retain(|r| {
                    let named = a
                        .route_name
                        .as_deref()
                        .is_some_and(|n| r.name.eq_ignore_ascii_case(n));
                    let of_source = wanted.is_some_and(|s| r.source == s);
                    let all = a.route_name.is_none() && wanted.is_none();
                    !(named || of_source || all)
                });
                if let Some(name) = &a.route_name
                    && c.routes.len() == before
                {
                    bail!("there is no route named '{name}'");
                }
                Ok(())
            })
            .await?;
            Ok(None)
        }
        MessageRouteCommand::Test(a) => {
            let message = TestMessage {
                body: a.body.clone(),
                app_properties: properties(a.app_properties.as_deref())?,
                system_properties: properties(a.system_properties.as_deref())?,
            };
            match &a.route_name {
                Some(name) => {
                    let (mut config, _) = client.get_routing().await?;
                    let route = find(&mut config, name)?.clone();
                    to_value(
                        &client
                            .test_route(&TestRouteInput {
                                message,
                                route,
                                twin: None,
                            })
                            .await?,
                    )
                }
                None => {
                    let routing_source = match a.source.as_deref() {
                        Some(s) => Some(format!("{:?}", source(s)?)),
                        None => None,
                    };
                    to_value(
                        &client
                            .test_all_routes(&TestAllRoutesInput {
                                routing_source,
                                message,
                                twin: None,
                            })
                            .await?,
                    )
                }
            }
        }
        MessageRouteCommand::Fallback { command } => match command {
            FallbackCommand::Show(_) => {
                let (config, _) = client.get_routing().await?;
                to_value(&config.fallback())
            }
            FallbackCommand::Set(a) => {
                let config = edit(&client, |c| {
                    let mut fallback = c.fallback();
                    fallback.is_enabled = a.enabled;
                    c.fallback_route = Some(fallback);
                    Ok(())
                })
                .await?;
                to_value(&config.fallback())
            }
        },
    }
}

/// Runs a `message-enrichment` command; `None` when it prints nothing (delete).
pub async fn run_enrichment(
    session: &Session,
    command: &MessageEnrichmentCommand,
) -> anyhow::Result<Option<Value>> {
    let client = session.client()?;
    match command {
        MessageEnrichmentCommand::Create(a) | MessageEnrichmentCommand::Update(a) => {
            let create = matches!(command, MessageEnrichmentCommand::Create(_));
            let config = edit(&client, |c| {
                let existing = c.enrichments.iter_mut().find(|e| e.key == a.key);
                match (existing, create) {
                    (Some(_), true) => {
                        bail!("an enrichment with the key '{}' exists already", a.key)
                    }
                    (None, false) => bail!("there is no enrichment with the key '{}'", a.key),
                    (Some(e), false) => {
                        e.value = a.value.clone();
                        e.endpoint_names = a.endpoints.clone();
                    }
                    (None, true) => c.enrichments.push(Enrichment {
                        key: a.key.clone(),
                        value: a.value.clone(),
                        endpoint_names: a.endpoints.clone(),
                    }),
                }
                Ok(())
            })
            .await?;
            to_value(&config.enrichments)
        }
        MessageEnrichmentCommand::List(_) => to_value(&client.get_routing().await?.0.enrichments),
        MessageEnrichmentCommand::Delete(a) => {
            edit(&client, |c| {
                let before = c.enrichments.len();
                c.enrichments.retain(|e| e.key != a.key);
                if c.enrichments.len() == before {
                    bail!("there is no enrichment with the key '{}'", a.key);
                }
                Ok(())
            })
            .await?;
            Ok(None)
        }
    }
}
