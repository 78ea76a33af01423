//! Aggregates and groups: the running value of `COUNT()`, `SUM`, `AVG`, `MIN` and `MAX`
//! ([`Accumulator`]), and the items a query's groups give ([`Query::group_items`]). The
//! in-process [`crate::Collector`] and a store that computes groups itself ("push-down",
//! [`Query::pushdown`]) share both, so that they answer alike.

use serde_json::{Map, Value};

use crate::expr::Expr;
use crate::hints::Hint;
use crate::select::{Aggregate, Projection, Query};
use crate::value::{self, sort_order};

/// The running state of one aggregate.
#[derive(Debug, Clone)]
enum State {
    Count(u64),
    Sum(Option<f64>),
    Avg(f64, u64),
    Extreme(Option<Value>),
}

/// One aggregate over the documents of a group, fed one document's value at a time in
/// device id order (the order decides which of two equal extremes, `1` or `1.0`, is kept,
/// and how floating sums round).
#[derive(Debug, Clone)]
pub struct Accumulator {
    function: Aggregate,
    state: State,
}

impl Accumulator {
    /// An aggregate over no documents yet.
    pub fn new(function: Aggregate) -> Self {
        let state = match function {
            Aggregate::Count => State::Count(0),
            Aggregate::Sum => State::Sum(None),
            Aggregate::Avg => State::Avg(0.0, 0),
            Aggregate::Min | Aggregate::Max => State::Extreme(None),
        };
        Accumulator { function, state }
    }

    /// Adds one document, whose argument's value is `v` (undefined for `COUNT()`):
    /// `COUNT()` counts documents; the others take numbers only (`MIN` and `MAX` strings
    /// too, among strings), and skip anything else.
    pub fn push(&mut self, v: Option<&Value>) {
        let f = self.function;
        match &mut self.state {
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

    /// Adds `n` documents at once to a `COUNT()`.
    pub fn add_count(&mut self, n: u64) {
        if let State::Count(c) = &mut self.state {
            *c += n;
        }
    }

    /// The value of each aggregate, in order.
    pub fn finish_all(accumulators: Vec<Accumulator>) -> Vec<Option<Value>> {
        accumulators.into_iter().map(Accumulator::finish).collect()
    }

    /// The aggregate's value: undefined when no document gave it a number (or string).
    pub fn finish(self) -> Option<Value> {
        match self.state {
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
}

/// One group: the values of the `GROUP BY` keys (undefined as `None`) and the value of each
/// `SELECT` item that is an aggregate, in `SELECT` order.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub keys: Vec<Option<Value>>,
    pub values: Vec<Option<Value>>,
}

/// What a store needs to compute a query's groups itself: the property paths (plain keys)
/// of its `GROUP BY` keys, of its aggregates' arguments, and the comparisons its `WHERE`
/// clause is made of. The store must apply the comparisons exactly (not as a superset).
#[derive(Debug, Clone, PartialEq)]
pub struct Pushdown {
    pub group_by: Vec<Vec<String>>,
    /// Each aggregate `SELECT` item, in `SELECT` order, with its argument's path.
    pub aggregates: Vec<(Aggregate, Option<Vec<String>>)>,
    /// The `WHERE` clause: every one of these holds.
    pub conditions: Vec<Hint>,
}

/// What a store needs to give a query's first items itself: `SELECT TOP n … ORDER BY` one
/// plain path, without groups, its `WHERE` clause only comparisons joined by `AND` (as for
/// [`Pushdown`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TopPushdown {
    pub order_by: Vec<String>,
    pub descending: bool,
    pub top: u64,
    pub conditions: Vec<Hint>,
}

impl Query {
    /// Whether the query has groups or aggregates (its items come from groups).
    pub fn grouped(&self) -> bool {
        !self.group_by.is_empty() || self.aggregates()
    }

    /// What a store needs to compute this query's groups itself, when it can be done
    /// without the documents: the query is grouped, its keys and aggregates' arguments are
    /// plain paths, its `WHERE` clause is only comparisons of paths with literals joined by
    /// `AND`, and it orders by group keys only. The collection is the caller's to check.
    pub fn pushdown(&self) -> Option<Pushdown> {
        if !self.grouped() || !self.order_by.iter().all(|(e, _)| self.group_by.contains(e)) {
            return None;
        }
        let group_by = self
            .group_by
            .iter()
            .map(Expr::keys)
            .collect::<Option<Vec<_>>>()?;
        let mut aggregates = Vec::new();
        for item in self.select.iter().flatten() {
            if let Projection::Aggregate(f, arg) = &item.projection {
                let arg = match arg {
                    Some(e) => Some(Expr::keys(e)?),
                    None => None,
                };
                aggregates.push((*f, arg));
            }
        }
        Some(Pushdown {
            group_by,
            aggregates,
            conditions: self.exact_hints()?,
        })
    }

    /// What a store needs to give this query's items in order (see [`TopPushdown`]).
    pub fn top_pushdown(&self) -> Option<TopPushdown> {
        let [(key, descending)] = self.order_by.as_slice() else {
            return None;
        };
        if self.grouped() {
            return None;
        }
        Some(TopPushdown {
            order_by: Expr::keys(key)?,
            descending: *descending,
            top: self.top?,
            conditions: self.exact_hints()?,
        })
    }

    /// A fresh accumulator for each aggregate `SELECT` item, in `SELECT` order.
    pub fn accumulators(&self) -> Vec<Accumulator> {
        self.select
            .iter()
            .flatten()
            .filter_map(|i| match i.projection {
                Projection::Aggregate(f, _) => Some(Accumulator::new(f)),
                Projection::Expr(_) => None,
            })
            .collect()
    }

    /// The items of a grouped query from its groups, in the order the groups were first met
    /// (the order of their first document), then ordered by `ORDER BY` and cut to `TOP`.
    /// `order_keys` gives each group's `ORDER BY` values; `None` takes them from its keys
    /// (every `ORDER BY` key is then one of the `GROUP BY` keys). Aggregates over no
    /// documents without `GROUP BY` still give their one item (`COUNT()` is 0).
    pub fn group_items(
        &self,
        mut groups: Vec<GroupRow>,
        mut order_keys: Option<Vec<Vec<Option<Value>>>>,
    ) -> Vec<Value> {
        if groups.is_empty() && self.group_by.is_empty() {
            if let Some(order) = &mut order_keys {
                order.push(vec![None; self.order_by.len()]);
            }
            groups.push(GroupRow {
                keys: Vec::new(),
                values: Accumulator::finish_all(self.accumulators()),
            });
        }
        let key_of = |g: &GroupRow, e: &Expr| {
            self.group_by
                .iter()
                .position(|k| k == e)
                .and_then(|i| g.keys.get(i).cloned().flatten())
        };
        let order_keys = order_keys.unwrap_or_else(|| {
            groups
                .iter()
                .map(|g| self.order_by.iter().map(|(e, _)| key_of(g, e)).collect())
                .collect()
        });
        let mut rows: Vec<(Vec<Option<Value>>, Value)> = groups
            .into_iter()
            .zip(order_keys)
            .map(|(g, order)| {
                let mut out = Map::new();
                let mut values = g.values.iter();
                for item in self.select.iter().flatten() {
                    let v = match &item.projection {
                        Projection::Expr(e) => key_of(&g, e),
                        Projection::Aggregate(..) => values.next().cloned().flatten(),
                    };
                    if let Some(v) = v {
                        out.insert(item.name.clone(), v);
                    }
                }
                (order, Value::Object(out))
            })
            .collect();
        sort_rows(&self.order_by, &mut rows);
        let mut rows: Vec<Value> = rows.into_iter().map(|(_, r)| r).collect();
        if let Some(top) = self.top.and_then(|t| usize::try_from(t).ok()) {
            rows.truncate(top);
        }
        rows
    }
}

/// Sorts items by their `ORDER BY` values (stable: equal ones keep their order).
pub(crate) fn sort_rows(order_by: &[(Expr, bool)], rows: &mut [(Vec<Option<Value>>, Value)]) {
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
