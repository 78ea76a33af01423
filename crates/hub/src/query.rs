//! Twin queries (`POST /devices/query`): IoT Hub's query language (`ironhub-query`) run over
//! the twins IoT Hub would answer (`GET /twins/{id}`'s shape), a page at a time, with an
//! opaque continuation token, as the Azure page "IoT Hub query language for device and
//! module twins, jobs, and message routing" and the service SDKs' query paging describe.
//!
//! Queries without groups, aggregates or `ORDER BY` stream: each page reads the store from
//! where the last one stopped (the token holds the last device id read), so a full scan
//! holds one batch in memory at a time. The others read every matching twin into a
//! [`ironhub_query::Collector`] (memory by group, or by item when ordering) and page through
//! its answer by offset. The `WHERE` clause's simple comparisons are handed to the store
//! ([`ironhub_store::TwinScan`]), which may use them to read fewer devices; every device it
//! returns is checked again here. Before reading every twin, a collected query is offered
//! whole to the store when it can be answered there exactly: its groups
//! ([`ironhub_store::TwinAggregate`]) or its first twins in order
//! ([`ironhub_store::TwinTop`]); a store that declines leaves it to the collector.

use base64::Engine as _;
use ironhub_query::{Collection, GroupRow, Hint, ItemType, Query};
use ironhub_store::{DeviceField, ScanCondition, TwinAggregate, TwinField, TwinScan, TwinTop};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::module_twin::module_twin_view;
use crate::twin::{empty_twin, twin_view};

/// A twin as a query document.
fn to_doc(twin: crate::model::Twin) -> Result<Value, HubError> {
    serde_json::to_value(twin).map_err(|e| HubError::ServerError(e.to_string()))
}
use crate::{Hub, HubError};

/// Items in a page when the client does not say (`x-ms-max-item-count`).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most items a page holds, whatever the client asks.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Devices read from the store at a time.
const SCAN_BATCH: usize = 1000;

/// One page of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    pub items: Vec<Value>,
    /// `x-ms-item-type`.
    pub item_type: ItemType,
    /// `x-ms-continuation`: where the next page starts, absent on the last page.
    pub continuation: Option<String>,
    /// The names of the `SELECT` items in `SELECT` order (none for `SELECT *`): IoT Hub
    /// writes each projected item's properties in this order.
    pub columns: Vec<String>,
}

impl QueryPage {
    /// The items as the answer writes them: projected items with their properties in
    /// `SELECT` order ([`QueryPage::columns`]), the others as they are.
    pub fn ordered_items(&self) -> Vec<OrderedItem<'_>> {
        self.items
            .iter()
            .map(|value| OrderedItem {
                value,
                columns: &self.columns,
            })
            .collect()
    }
}

/// An item that serializes its properties in the order of `columns` (then any others, in
/// their own order).
#[derive(Debug, Clone, Copy)]
pub struct OrderedItem<'a> {
    value: &'a Value,
    columns: &'a [String],
}

impl Serialize for OrderedItem<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(map) = self.value else {
            return self.value.serialize(serializer);
        };
        if self.columns.is_empty() {
            return map.serialize(serializer);
        }
        let mut out = serializer.serialize_map(Some(map.len()))?;
        for name in self.columns {
            if let Some(v) = map.get(name) {
                out.serialize_entry(name, v)?;
            }
        }
        for (k, v) in map {
            if !self.columns.contains(k) {
                out.serialize_entry(k, v)?;
            }
        }
        out.end()
    }
}

/// The names of a query's `SELECT` items, in order.
fn columns(query: &Query) -> Vec<String> {
    query
        .select
        .iter()
        .flatten()
        .map(|i| i.name.clone())
        .collect()
}

/// Where the next page starts (the token is this, as base64 JSON).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Continuation {
    /// Streamed queries: the last device id read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    /// Streamed queries: items answered so far (for `TOP`).
    #[serde(default)]
    answered: u64,
    /// Collected queries: items answered so far.
    #[serde(default)]
    offset: usize,
}

impl Continuation {
    fn parse(token: Option<&str>) -> Result<Self, HubError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Continuation::default());
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| HubError::ArgumentInvalid("The continuation token is not valid.".into()))
    }

    fn token(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }
}

/// The store condition of a hint on the twin document, when it names a field the store
/// keeps apart: the device id, a scalar of the registry record ([`DeviceField`]), or a
/// property below tags, desired or reported (not the sections' `$metadata` and `$version`,
/// which are computed).
fn scan_condition(hint: &Hint) -> Option<ScanCondition> {
    Some(ScanCondition {
        field: twin_field(&hint.path)?,
        op: hint.op,
        values: hint.values.clone(),
    })
}

/// The field a property path of the twin document names, when the store keeps it apart
/// (see [`scan_condition`]).
fn twin_field(path: &[String]) -> Option<TwinField> {
    let first = path.first()?;
    let below = |from: usize| -> Option<Vec<String>> {
        let rest = path.get(from..)?;
        (!rest.is_empty() && !rest[0].starts_with('$')).then(|| rest.to_vec())
    };
    // The twin's own fields are looked up ignoring case, what is below them exactly (as
    // `ironhub_query` does).
    let own = |name: &str| path.len() == 1 && first.eq_ignore_ascii_case(name);
    if own("deviceId") {
        Some(TwinField::DeviceId)
    } else if own("status") {
        Some(TwinField::Device(DeviceField::Status))
    } else if own("connectionState") {
        Some(TwinField::Device(DeviceField::ConnectionState))
    } else if own("authenticationType") {
        Some(TwinField::Device(DeviceField::AuthenticationType))
    } else if first.eq_ignore_ascii_case("capabilities") {
        (path.len() == 2 && path[1] == "iotEdge").then_some(TwinField::Device(DeviceField::IotEdge))
    } else if first.eq_ignore_ascii_case("tags") {
        Some(TwinField::Tags(below(1)?))
    } else if first.eq_ignore_ascii_case("properties") {
        match path.get(1)?.as_str() {
            "desired" => Some(TwinField::Desired(below(2)?)),
            "reported" => Some(TwinField::Reported(below(2)?)),
            _ => None,
        }
    } else {
        None
    }
}

/// The store request computing a device twin query's groups, when every path it needs is a
/// field the store keeps apart and its `WHERE` clause is only such comparisons.
fn aggregate_request(query: &Query) -> Option<TwinAggregate> {
    if query.collection != Collection::Devices {
        return None;
    }
    let plan = query.pushdown()?;
    Some(TwinAggregate {
        conditions: plan
            .conditions
            .iter()
            .map(scan_condition)
            .collect::<Option<_>>()?,
        group_by: plan
            .group_by
            .iter()
            .map(|p| twin_field(p))
            .collect::<Option<_>>()?,
        aggregates: plan
            .aggregates
            .into_iter()
            .map(|(f, arg)| match arg {
                None => Some((f, None)),
                Some(p) => twin_field(&p).map(|t| (f, Some(t))),
            })
            .collect::<Option<_>>()?,
    })
}

/// The store request giving a device twin query's first items in order, when the path it
/// orders by is a twin property and its `WHERE` clause only comparisons on stored fields.
fn top_request(query: &Query) -> Option<TwinTop> {
    if query.collection != Collection::Devices {
        return None;
    }
    let plan = query.top_pushdown()?;
    let order_by = match twin_field(&plan.order_by)? {
        TwinField::DeviceId => return None,
        field => field,
    };
    Some(TwinTop {
        conditions: plan
            .conditions
            .iter()
            .map(scan_condition)
            .collect::<Option<_>>()?,
        order_by,
        descending: plan.descending,
        limit: usize::try_from(plan.top).ok()?,
    })
}

impl Hub {
    /// Runs a query: one page of its answer, from `continuation` (a token an earlier page
    /// gave), with at most `page_size` items (default [`DEFAULT_PAGE_SIZE`], at most
    /// [`MAX_PAGE_SIZE`]). `devices.modules` reads every module's twin; `devices.jobs` every
    /// device's record of each scheduled job (`hub::jobs`).
    pub(crate) async fn query_twins_unobserved(
        &self,
        text: &str,
        continuation: Option<&str>,
        page_size: Option<usize>,
    ) -> Result<QueryPage, HubError> {
        self.query_page(text, continuation, page_size, true).await
    }

    /// [`Hub::query_twins`] without handing `GROUP BY` to the store: every twin is read and
    /// grouped here. The answer is the same, only slower: this is what tests and benchmarks
    /// compare the store's groups with.
    pub async fn query_twins_scanned(
        &self,
        text: &str,
        continuation: Option<&str>,
        page_size: Option<usize>,
    ) -> Result<QueryPage, HubError> {
        self.query_page(text, continuation, page_size, false).await
    }

    async fn query_page(
        &self,
        text: &str,
        continuation: Option<&str>,
        page_size: Option<usize>,
        pushdown: bool,
    ) -> Result<QueryPage, HubError> {
        let query = Query::parse(text).map_err(|e| HubError::InvalidQuery(e.to_string()))?;
        let token = Continuation::parse(continuation)?;
        let page_size = page_size
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE);
        let conditions: Vec<ScanCondition> =
            query.hints().iter().filter_map(scan_condition).collect();
        if query.is_streamed() {
            self.streamed_page(&query, &conditions, token, page_size)
                .await
        } else {
            self.collected_page(&query, &conditions, token, page_size, pushdown)
                .await
        }
    }

    /// Reads the next batch of twins of the query's collection after `after` (a device id,
    /// or `deviceId/moduleId` for module twins: ids hold no `/`), as query documents keyed so,
    /// and whether the collection is exhausted after it. Device twins come `limit` at most
    /// (module and job twins in batches of their own size).
    async fn twin_batch(
        &self,
        query: &Query,
        conditions: &[ScanCondition],
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(String, Value)>, bool), HubError> {
        match query.collection {
            Collection::Devices => {}
            Collection::Modules => return self.module_twin_batch(after).await,
            Collection::Jobs => return self.device_job_batch(after).await,
        }
        let rows = self
            .store
            .scan_twins(&TwinScan {
                after,
                limit,
                conditions: conditions.to_vec(),
            })
            .await?;
        let exhausted = rows.len() < limit;
        let docs = rows
            .into_iter()
            .map(|(device, twin)| {
                let twin = twin.unwrap_or_else(|| empty_twin(&device.device_id));
                Ok((device.device_id.clone(), to_doc(twin_view(&device, &twin))?))
            })
            .collect::<Result<_, HubError>>()?;
        Ok((docs, exhausted))
    }

    /// The next batch of module twins: those after `after`'s module on its device first,
    /// then every module of the devices after it. The store scans them when it can
    /// (`ModuleStore::scan_module_twins`); otherwise each device of a batch is asked for its
    /// modules and their twins.
    async fn module_twin_batch(
        &self,
        after: Option<String>,
    ) -> Result<(Vec<(String, Value)>, bool), HubError> {
        let (after_device, after_module) = match &after {
            Some(key) => match key.split_once('/') {
                Some((d, m)) => (Some(d.to_owned()), Some(m.to_owned())),
                None => (Some(key.clone()), None),
            },
            None => (None, None),
        };
        let from = after_device
            .as_deref()
            .map(|d| (d, after_module.as_deref()));
        if let Some(rows) = self.store.scan_module_twins(from, SCAN_BATCH).await? {
            let exhausted = rows.len() < SCAN_BATCH;
            let docs = rows
                .into_iter()
                .map(|(device, module, twin)| {
                    let twin = twin.unwrap_or_else(|| empty_twin(&device.device_id));
                    let key = format!("{}/{}", device.device_id, module.module_id);
                    Ok((key, to_doc(module_twin_view(&device, &module, &twin))?))
                })
                .collect::<Result<_, HubError>>()?;
            return Ok((docs, exhausted));
        }
        // The device whose modules the last page stopped in, and the module it stopped at.
        let resume = after_device.clone().zip(after_module);
        let mut devices = Vec::new();
        if let Some((d, _)) = &resume
            && let Some(device) = self.store.get_device(d).await?
        {
            devices.push(device);
        }
        let rows = self
            .store
            .scan_twins(&TwinScan {
                after: after_device,
                limit: SCAN_BATCH,
                conditions: Vec::new(),
            })
            .await?;
        let exhausted = rows.len() < SCAN_BATCH;
        devices.extend(rows.into_iter().map(|(device, _)| device));
        let mut docs = Vec::new();
        for device in devices {
            for module in self.store.list_modules(&device.device_id).await? {
                if resume
                    .as_ref()
                    .is_some_and(|(d, m)| module.device_id == *d && module.module_id <= *m)
                {
                    continue;
                }
                let twin = self
                    .store
                    .get_module_twin(&device.device_id, &module.module_id)
                    .await?
                    .unwrap_or_else(|| empty_twin(&device.device_id));
                let key = format!("{}/{}", device.device_id, module.module_id);
                docs.push((key, to_doc(module_twin_view(&device, &module, &twin))?));
            }
        }
        Ok((docs, exhausted))
    }

    async fn streamed_page(
        &self,
        query: &Query,
        conditions: &[ScanCondition],
        token: Continuation,
        page_size: usize,
    ) -> Result<QueryPage, HubError> {
        let left = query
            .top
            .map_or(u64::MAX, |top| top.saturating_sub(token.answered));
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(page_size);
        let mut items = Vec::new();
        let mut after = token.after;
        let mut more = false;
        // The first batch is the page and one more device (enough when most devices match: a
        // page of 50 of a large registry reads 51, not a full batch); then full batches.
        let mut limit = want.saturating_add(1).min(SCAN_BATCH);
        while items.len() < want {
            let (batch, exhausted) = self
                .twin_batch(query, conditions, after.clone(), limit)
                .await?;
            limit = SCAN_BATCH;
            let count = batch.len();
            for (i, (id, doc)) in batch.into_iter().enumerate() {
                after = Some(id);
                if query.matches(&doc) {
                    items.push(query.project(doc));
                    if items.len() == want {
                        more = i + 1 < count || !exhausted;
                        break;
                    }
                }
            }
            if exhausted {
                break;
            }
            more = true;
        }
        let answered = token.answered + items.len() as u64;
        let more = more && query.top.is_none_or(|top| answered < top);
        Ok(QueryPage {
            columns: columns(query),
            item_type: query.item_type(),
            continuation: more.then(|| {
                Continuation {
                    after,
                    answered,
                    offset: 0,
                }
                .token()
            }),
            items,
        })
    }

    /// The items of a collected query as the store computes them (its groups, or its first
    /// twins in order), or `None` when the store does not.
    async fn pushed_down(
        &self,
        query: &Query,
        pushdown: bool,
    ) -> Result<Option<Vec<Value>>, HubError> {
        if !pushdown {
            return Ok(None);
        }
        if let Some(request) = aggregate_request(query) {
            let Some(groups) = self.store.aggregate_twins(&request).await? else {
                return Ok(None);
            };
            let groups = groups
                .into_iter()
                .map(|g| GroupRow {
                    keys: g.keys,
                    values: g.values,
                })
                .collect();
            return Ok(Some(query.group_items(groups, None)));
        }
        let Some(request) = top_request(query) else {
            return Ok(None);
        };
        let Some(rows) = self.store.top_twins(&request).await? else {
            return Ok(None);
        };
        // The store's order is the language's: the collector keeps it, and checks each twin.
        let mut collector = query.collector();
        for (device, twin) in rows {
            let twin = twin.unwrap_or_else(|| empty_twin(&device.device_id));
            let doc = to_doc(twin_view(&device, &twin))?;
            if query.matches(&doc) {
                collector.push(doc);
            }
        }
        Ok(Some(collector.finish()))
    }

    /// Reads every matching twin of the query's collection into a collector.
    async fn collect_in_process(
        &self,
        query: &Query,
        conditions: &[ScanCondition],
    ) -> Result<Vec<Value>, HubError> {
        let mut collector = query.collector();
        let mut after = None;
        loop {
            let (batch, exhausted) = self
                .twin_batch(query, conditions, after.take(), SCAN_BATCH)
                .await?;
            for (id, doc) in batch {
                after = Some(id);
                if query.matches(&doc) {
                    collector.push(doc);
                }
            }
            if exhausted {
                return Ok(collector.finish());
            }
        }
    }

    async fn collected_page(
        &self,
        query: &Query,
        conditions: &[ScanCondition],
        token: Continuation,
        page_size: usize,
        pushdown: bool,
    ) -> Result<QueryPage, HubError> {
        let all = match self.pushed_down(query, pushdown).await? {
            Some(items) => items,
            None => self.collect_in_process(query, conditions).await?,
        };

        let end = token.offset.saturating_add(page_size).min(all.len());
        let items = all
            .get(token.offset..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        Ok(QueryPage {
            columns: columns(query),
            item_type: query.item_type(),
            continuation: (end < all.len()).then(|| {
                Continuation {
                    offset: end,
                    ..Continuation::default()
                }
                .token()
            }),
            items,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn field(path: &str) -> Option<TwinField> {
        let path: Vec<String> = path.split('.').map(str::to_owned).collect();
        twin_field(&path)
    }

    #[test]
    fn registry_fields_are_named_as_the_evaluator_looks_them_up() {
        let device = |f| Some(TwinField::Device(f));
        assert_eq!(field("status"), device(DeviceField::Status));
        assert_eq!(field("Status"), device(DeviceField::Status));
        assert_eq!(
            field("connectionState"),
            device(DeviceField::ConnectionState)
        );
        assert_eq!(
            field("authenticationType"),
            device(DeviceField::AuthenticationType)
        );
        assert_eq!(field("capabilities.iotEdge"), device(DeviceField::IotEdge));
        assert_eq!(field("Capabilities.iotEdge"), device(DeviceField::IotEdge));
        // Below the twin's own fields, names are exact; nothing is below a scalar.
        assert_eq!(field("capabilities.IotEdge"), None);
        assert_eq!(field("capabilities"), None);
        assert_eq!(field("status.x"), None);
        assert_eq!(field("statusReason"), None);
        let query = Query::parse(
            "SELECT * FROM devices WHERE status = 'disabled' AND connectionState IN ['Connected']",
        )
        .unwrap();
        let conditions: Vec<ScanCondition> =
            query.hints().iter().filter_map(scan_condition).collect();
        assert_eq!(
            conditions.iter().map(|c| c.flags()).collect::<Vec<_>>(),
            [Some(vec![false]), Some(vec![true])]
        );
    }
}
