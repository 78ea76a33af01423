//! Automatic device management and IoT Edge deployments (`/configurations/{id}`): IoT Hub's
//! rules for what a configuration may hold (`rules`), its create, read, update and delete
//! with etags and its metrics (here), how configurations are applied to the twins they
//! target (`apply`), and what IoT Edge devices get (`edge`).

pub mod apply;
pub mod edge;
pub mod rules;

use chrono::Utc;
use ironhub_store::{ConfigurationRecord, ConfigurationWrite, WriteConflict};
use serde_json::Value;

use crate::model::{Configuration, ConfigurationMetrics, azure_time};
use crate::query::MAX_PAGE_SIZE;
use crate::registry::normalize_if_match;
use crate::{Hub, HubError};

pub use rules::{Kind, Parsed};

/// The most configurations `GET /configurations` returns (IoT Hub's cap on a hub's
/// configurations and deployments together).
pub const MAX_CONFIGURATIONS: usize = 100;

/// The stored configuration as the API returns it, metrics not yet counted.
fn stored_view(record: &ConfigurationRecord) -> Result<Configuration, HubError> {
    let mut view: Configuration = serde_json::from_value(record.doc.clone())
        .map_err(|e| HubError::ServerError(format!("a stored configuration is unreadable: {e}")))?;
    view.etag = Some(record.etag.clone());
    Ok(view)
}

impl Hub {
    /// `GET /configurations/{id}`, with its metrics counted now.
    pub async fn get_configuration(&self, id: &str) -> Result<Configuration, HubError> {
        let record = self
            .store
            .get_configuration(id)
            .await?
            .ok_or_else(|| HubError::ConfigurationNotFound(id.to_owned()))?;
        let mut view = stored_view(&record)?;
        self.count_metrics(&mut view).await?;
        Ok(view)
    }

    /// `GET /configurations?top=n`: the configurations in id order, at most `top` (and at
    /// most [`MAX_CONFIGURATIONS`]), with their metrics.
    pub async fn list_configurations(
        &self,
        top: Option<usize>,
    ) -> Result<Vec<Configuration>, HubError> {
        let limit = top.unwrap_or(MAX_CONFIGURATIONS).min(MAX_CONFIGURATIONS);
        let mut out = Vec::new();
        for record in self.store.list_configurations().await?.iter().take(limit) {
            let mut view = stored_view(record)?;
            self.count_metrics(&mut view).await?;
            out.push(view);
        }
        Ok(out)
    }

    /// `PUT /configurations/{id}`: creates the configuration without `If-Match`, else
    /// replaces its priority, target condition, labels and metrics (its content cannot
    /// change, as in IoT Hub). Refused input writes nothing. Its application to the twins
    /// follows in the background (`apply`).
    pub async fn put_configuration(
        &self,
        id: &str,
        config: &Configuration,
        if_match: Option<&str>,
    ) -> Result<Configuration, HubError> {
        rules::validate_id(id)?;
        if !config.id.is_empty() && config.id != id {
            return Err(HubError::ArgumentInvalid(format!(
                "The configuration id in the body ('{}') does not match the one in the URL ('{id}').",
                config.id
            )));
        }
        Parsed::parse(config)?;
        crate::nul::reject_nul_in(config, "the configuration")?;
        let now = azure_time(Some(Utc::now()));
        let if_match = if_match.map(normalize_if_match);
        let current = self.store.get_configuration(id).await?;
        let mut doc = config.clone();
        doc.id = id.to_owned();
        doc.etag = None;
        doc.schema_version = Some(doc.schema_version.unwrap_or_else(|| "1.0".into()));
        doc.system_metrics = ConfigurationMetrics::default();
        doc.metrics.results.clear();
        doc.last_updated_time_utc = Some(now.clone());
        let write = match (current, if_match) {
            (None, None) => {
                doc.created_time_utc = Some(now);
                ConfigurationWrite::Create {
                    id: id.to_owned(),
                    doc: to_value(&doc)?,
                }
            }
            (None, Some(_)) => return Err(HubError::ConfigurationNotFound(id.to_owned())),
            (Some(_), None) => return Err(HubError::ConfigurationAlreadyExists(id.to_owned())),
            (Some(current), Some(tag)) => {
                if tag != "*" && tag != current.etag {
                    return Err(HubError::PreconditionFailed(tag));
                }
                let stored = stored_view(&current)?;
                if stored.content != doc.content {
                    return Err(HubError::ArgumentInvalid(format!(
                        "The content of configuration '{id}' cannot be updated; create a new \
                         configuration instead."
                    )));
                }
                doc.created_time_utc = stored.created_time_utc;
                ConfigurationWrite::Replace {
                    id: id.to_owned(),
                    doc: to_value(&doc)?,
                    // Compare-and-swap on what was read, so a concurrent write is not lost.
                    if_match: current.etag,
                }
            }
        };
        let written = self.write_configuration(write, id).await?;
        self.kick_configurations();
        let mut view = stored_view(&written)?;
        self.count_metrics(&mut view).await?;
        Ok(view)
    }

    /// `DELETE /configurations/{id}` (`If-Match` `*` or its etag). The desired properties it
    /// wrote stay, as in IoT Hub; the twins stop naming it.
    pub async fn delete_configuration(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), HubError> {
        let tag = if_match.map_or_else(|| "*".to_owned(), normalize_if_match);
        let write = ConfigurationWrite::Delete {
            id: id.to_owned(),
            if_match: tag,
        };
        self.write_configuration(write, id).await?;
        self.kick_configurations();
        Ok(())
    }

    async fn write_configuration(
        &self,
        write: ConfigurationWrite,
        id: &str,
    ) -> Result<ConfigurationRecord, HubError> {
        let tag = match &write {
            ConfigurationWrite::Replace { if_match, .. }
            | ConfigurationWrite::Delete { if_match, .. } => if_match.clone(),
            ConfigurationWrite::Create { .. } => String::new(),
        };
        match self.store.write_configuration(write).await? {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Ok(ConfigurationRecord {
                id: id.to_owned(),
                doc: Value::Null,
                etag: String::new(),
            }),
            Err(WriteConflict::AlreadyExists) => {
                Err(HubError::ConfigurationAlreadyExists(id.to_owned()))
            }
            Err(WriteConflict::NotFound) => Err(HubError::ConfigurationNotFound(id.to_owned())),
            Err(WriteConflict::EtagMismatch) => Err(HubError::PreconditionFailed(tag)),
        }
    }

    /// Counts a configuration's system metrics and custom metric queries now.
    async fn count_metrics(&self, view: &mut Configuration) -> Result<(), HubError> {
        let parsed = Parsed::parse(view)?;
        view.system_metrics.queries = parsed.system_queries();
        let mut results = std::collections::BTreeMap::new();
        for (name, query) in &view.system_metrics.queries {
            results.insert(name.clone(), self.count_query(query).await?);
        }
        view.system_metrics.results = results;
        let mut results = std::collections::BTreeMap::new();
        for (name, query) in &view.metrics.queries {
            // A query that fails now (it was valid when written) counts nothing.
            results.insert(name.clone(), self.count_query(query).await.unwrap_or(0));
        }
        view.metrics.results = results;
        Ok(())
    }

    /// How many items a query answers, page after page.
    pub(crate) async fn count_query(&self, text: &str) -> Result<u64, HubError> {
        let mut count = 0u64;
        let mut continuation: Option<String> = None;
        loop {
            let page = self
                .query_twins_unobserved(text, continuation.as_deref(), Some(MAX_PAGE_SIZE))
                .await?;
            count += page.items.len() as u64;
            match page.continuation {
                Some(next) => continuation = Some(next),
                None => return Ok(count),
            }
        }
    }
}

fn to_value(doc: &Configuration) -> Result<Value, HubError> {
    serde_json::to_value(doc).map_err(|e| HubError::ServerError(e.to_string()))
}

/// `POST /configurations/testQueries`: a target condition and custom metric queries to check.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueriesTest {
    #[serde(default)]
    pub target_condition: String,
    #[serde(default)]
    pub custom_metric_queries: std::collections::BTreeMap<String, String>,
}

/// What `testQueries` answers: the target condition's error and each bad query's, empty when
/// they are valid.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueriesTestResult {
    pub target_condition_error: String,
    pub custom_metric_query_errors: std::collections::BTreeMap<String, String>,
}

impl Hub {
    /// `POST /configurations/testQueries`.
    pub fn test_configuration_queries(&self, input: &QueriesTest) -> QueriesTestResult {
        let mut result = QueriesTestResult::default();
        let condition = input.target_condition.trim();
        if !condition.is_empty()
            && let Err(e) = ironhub_query::Condition::parse(condition, ironhub_query::Dialect::Twin)
        {
            result.target_condition_error = e.to_string();
        }
        for (name, query) in &input.custom_metric_queries {
            if let Err(e) = ironhub_query::Query::parse(query) {
                result
                    .custom_metric_query_errors
                    .insert(name.clone(), e.to_string());
            }
        }
        result
    }
}
