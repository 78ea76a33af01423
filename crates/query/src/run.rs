//! Running a parsed [`Query`] over documents: the filter, projections, groups with their
//! aggregates, order and `TOP`. The caller feeds documents in (from wherever they are kept);
//! queries without groups, aggregates or order are answered document by document
//! ([`Query::is_streamed`]), the others through a [`Collector`].

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::aggregate::{Accumulator, GroupRow, sort_rows};
use crate::expr::Expr;
use crate::select::{Collection, Projection, Query};
use crate::value::is_true;

/// What the items of an answer are (IoT Hub's `x-ms-item-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemType {
    /// Whole twins (`SELECT * FROM devices` or `devices.modules`).
    Twin,
    /// Whole device jobs (`SELECT * FROM devices.jobs`).
    DeviceJob,
    /// Projections and aggregates.
    Raw,
}

impl ItemType {
    /// The header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::Twin => "twin",
            ItemType::DeviceJob => "deviceJob",
            ItemType::Raw => "raw",
        }
    }
}

impl Query {
    /// The type of the answer's items.
    pub fn item_type(&self) -> ItemType {
        match (&self.select, self.collection) {
            (Some(_), _) => ItemType::Raw,
            (None, Collection::Jobs) => ItemType::DeviceJob,
            (None, _) => ItemType::Twin,
        }
    }

    /// Whether each matching document gives one item at once, in the order documents come
    /// (no `GROUP BY`, no aggregate, no `ORDER BY`).
    pub fn is_streamed(&self) -> bool {
        self.group_by.is_empty() && self.order_by.is_empty() && !self.aggregates()
    }

    /// Whether `doc` passes the `WHERE` clause (true, not merely defined).
    pub fn matches(&self, doc: &Value) -> bool {
        self.filter.as_ref().is_none_or(|f| is_true(&f.eval(doc)))
    }

    /// The item a matching document gives: itself for `SELECT *`, else an object of the
    /// projections that are defined.
    pub fn project(&self, doc: Value) -> Value {
        let Some(items) = &self.select else {
            return doc;
        };
        let mut out = Map::new();
        for item in items {
            if let Projection::Expr(e) = &item.projection
                && let Some(v) = e.eval(&doc)
            {
                out.insert(item.name.clone(), v.into_owned());
            }
        }
        Value::Object(out)
    }

    /// A collector for a query that is not streamed.
    pub fn collector(&self) -> Collector<'_> {
        Collector {
            query: self,
            rows: Vec::new(),
            groups: Vec::new(),
            index: HashMap::new(),
        }
    }
}

#[derive(Debug)]
struct Group {
    keys: Vec<Option<Value>>,
    /// The `ORDER BY` values of the group's first document.
    order: Vec<Option<Value>>,
    accumulators: Vec<Accumulator>,
}

/// Gathers the matching documents of a query with groups, aggregates or order, and gives
/// its items at the end. Memory grows with the number of groups, or with the number of
/// items when ordering (at most about twice `TOP` when there is one).
#[derive(Debug)]
pub struct Collector<'q> {
    query: &'q Query,
    rows: Vec<(Vec<Option<Value>>, Value)>,
    groups: Vec<Group>,
    index: HashMap<String, usize>,
}

fn group_key(values: &[Option<Value>]) -> String {
    let mut key = String::new();
    for v in values {
        match v {
            None => key.push('u'),
            Some(v) => {
                key.push('d');
                key.push_str(&v.to_string());
            }
        }
        key.push('\u{0}');
    }
    key
}

impl Collector<'_> {
    /// Adds a document that matched the query's filter.
    pub fn push(&mut self, doc: Value) {
        let query = self.query;
        if !query.grouped() {
            let keys = order_keys(&query.order_by, &doc);
            self.rows.push((keys, query.project(doc)));
            if let Some(top) = query.top.and_then(|t| usize::try_from(t).ok())
                && self.rows.len() > top.saturating_mul(2).max(1024)
            {
                sort_rows(&query.order_by, &mut self.rows);
                self.rows.truncate(top);
            }
            return;
        }
        let keys: Vec<Option<Value>> = query
            .group_by
            .iter()
            .map(|e| e.eval(&doc).map(std::borrow::Cow::into_owned))
            .collect();
        let key = group_key(&keys);
        let at = match self.index.get(&key) {
            Some(at) => *at,
            None => {
                self.groups.push(Group {
                    order: order_keys(&query.order_by, &doc),
                    keys,
                    accumulators: query.accumulators(),
                });
                self.index.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[at];
        let args = query
            .select
            .iter()
            .flatten()
            .filter_map(|item| match &item.projection {
                Projection::Aggregate(_, arg) => Some(arg),
                Projection::Expr(_) => None,
            });
        for (acc, arg) in group.accumulators.iter_mut().zip(args) {
            let v = arg.as_ref().and_then(|a| a.eval(&doc));
            acc.push(v.as_deref());
        }
    }

    /// The query's items, ordered and cut to `TOP`.
    pub fn finish(mut self) -> Vec<Value> {
        let query = self.query;
        let top = query.top.and_then(|t| usize::try_from(t).ok());
        if !query.grouped() {
            sort_rows(&query.order_by, &mut self.rows);
            let mut rows: Vec<Value> = self.rows.into_iter().map(|(_, r)| r).collect();
            if let Some(top) = top {
                rows.truncate(top);
            }
            return rows;
        }
        let (groups, order): (Vec<GroupRow>, Vec<_>) = self
            .groups
            .into_iter()
            .map(|g| {
                let row = GroupRow {
                    keys: g.keys,
                    values: Accumulator::finish_all(g.accumulators),
                };
                (row, g.order)
            })
            .unzip();
        query.group_items(groups, Some(order))
    }
}

fn order_keys(order_by: &[(Expr, bool)], doc: &Value) -> Vec<Option<Value>> {
    order_by
        .iter()
        .map(|(e, _)| e.eval(doc).map(std::borrow::Cow::into_owned))
        .collect()
}
