//! Running a parsed [`Query`] over documents: the filter, projections, groups with their
//! aggregates, order and `TOP`. The caller feeds documents in (from wherever they are kept);
//! queries without groups, aggregates or order are answered document by document
//! ([`Query::is_streamed`]), the others through a [`Collector`].

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::expr::Expr;
use crate::select::{Aggregate, Collection, Projection, Query};
use crate::value::{self, is_true, sort_order};

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

/// The running state of one aggregate.
#[derive(Debug, Clone)]
enum State {
    Count(u64),
    Sum(Option<f64>),
    Avg(f64, u64),
    Extreme(Option<Value>),
}

#[derive(Debug)]
struct Group {
    /// The first document of the group: the group's keys are evaluated on it.
    sample: Value,
    states: Vec<State>,
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
    fn grouped(&self) -> bool {
        !self.query.group_by.is_empty() || self.query.aggregates()
    }

    /// Adds a document that matched the query's filter.
    pub fn push(&mut self, doc: Value) {
        let query = self.query;
        if !self.grouped() {
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
                    sample: doc.clone(),
                    states: initial_states(query),
                });
                self.index.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[at];
        for (state, item) in group.states.iter_mut().zip(query.select.iter().flatten()) {
            if let Projection::Aggregate(f, arg) = &item.projection {
                let v = arg.as_ref().and_then(|a| a.eval(&doc));
                accumulate(state, *f, v.as_deref());
            }
        }
    }

    /// The query's items, ordered and cut to `TOP`.
    pub fn finish(mut self) -> Vec<Value> {
        let query = self.query;
        let top = query.top.and_then(|t| usize::try_from(t).ok());
        if !self.grouped() {
            sort_rows(&query.order_by, &mut self.rows);
            let mut rows: Vec<Value> = self.rows.into_iter().map(|(_, r)| r).collect();
            if let Some(top) = top {
                rows.truncate(top);
            }
            return rows;
        }
        if self.groups.is_empty() && query.group_by.is_empty() {
            // Aggregates over no documents still give their one row (`COUNT()` is 0).
            self.groups.push(Group {
                sample: Value::Null,
                states: initial_states(query),
            });
        }
        let mut rows: Vec<(Vec<Option<Value>>, Value)> = self
            .groups
            .into_iter()
            .map(|g| {
                let keys = order_keys(&query.order_by, &g.sample);
                let mut out = Map::new();
                for (item, state) in query.select.iter().flatten().zip(g.states) {
                    let v = match &item.projection {
                        Projection::Expr(e) => e.eval(&g.sample).map(std::borrow::Cow::into_owned),
                        Projection::Aggregate(..) => result(state),
                    };
                    if let Some(v) = v {
                        out.insert(item.name.clone(), v);
                    }
                }
                (keys, Value::Object(out))
            })
            .collect();
        sort_rows(&query.order_by, &mut rows);
        let mut rows: Vec<Value> = rows.into_iter().map(|(_, r)| r).collect();
        if let Some(top) = top {
            rows.truncate(top);
        }
        rows
    }
}

fn order_keys(order_by: &[(Expr, bool)], doc: &Value) -> Vec<Option<Value>> {
    order_by
        .iter()
        .map(|(e, _)| e.eval(doc).map(std::borrow::Cow::into_owned))
        .collect()
}

fn sort_rows(order_by: &[(Expr, bool)], rows: &mut [(Vec<Option<Value>>, Value)]) {
    if order_by.is_empty() {
        return;
    }
    rows.sort_by(|(a, _), (b, _)| {
        for (i, (_, desc)) in order_by.iter().enumerate() {
            let o = sort_order(a[i].as_ref(), b[i].as_ref());
            let o = if *desc { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
}

fn initial_states(query: &Query) -> Vec<State> {
    query
        .select
        .iter()
        .flatten()
        .map(|item| match item.projection {
            Projection::Aggregate(Aggregate::Count, _) => State::Count(0),
            Projection::Aggregate(Aggregate::Sum, _) => State::Sum(None),
            Projection::Aggregate(Aggregate::Avg, _) => State::Avg(0.0, 0),
            _ => State::Extreme(None),
        })
        .collect()
}

/// Adds one document's value to an aggregate: `COUNT()` counts documents; the others take
/// numbers only (`MIN` and `MAX` strings too, among strings), and skip anything else.
fn accumulate(state: &mut State, f: Aggregate, v: Option<&Value>) {
    match state {
        State::Count(n) => *n += 1,
        State::Sum(sum) => {
            if let Some(x) = v.and_then(Value::as_f64) {
                *sum = Some(sum.unwrap_or(0.0) + x);
            }
        }
        State::Avg(sum, n) => {
            if let Some(x) = v.and_then(Value::as_f64) {
                *sum += x;
                *n += 1;
            }
        }
        State::Extreme(best) => {
            let Some(v) = v.filter(|v| v.is_number() || v.is_string()) else {
                return;
            };
            let better = match best.as_ref() {
                None => true,
                Some(b) => match value::compare(v, b) {
                    Some(o) => {
                        (f == Aggregate::Min && o.is_lt()) || (f == Aggregate::Max && o.is_gt())
                    }
                    // Numbers sort before strings.
                    None => (f == Aggregate::Min) == v.is_number(),
                },
            };
            if better {
                *best = Some(v.clone());
            }
        }
    }
}

fn result(state: State) -> Option<Value> {
    match state {
        State::Count(n) => Some(Value::from(n)),
        State::Sum(sum) => value::number(sum?).map(std::borrow::Cow::into_owned),
        State::Avg(sum, n) => {
            if n == 0 {
                return None;
            }
            value::number(sum / n as f64).map(std::borrow::Cow::into_owned)
        }
        State::Extreme(v) => v,
    }
}
