//! `GROUP BY` on PostgreSQL (`TwinStore::aggregate_twins`). A group key is the `jsonb` text of
//! the property (`'0'` and `0` apart, `1` and `1.0` apart as `jsonb` keeps a number's scale,
//! `null` the text `null`, a missing property SQL `NULL`), so grouping on it is the
//! language's; devices without a twin row (left-joined) have every property missing.
//! Conditions are the exact ones of `pg_twins`. When every aggregate is `COUNT()` the
//! database counts; otherwise it sends each matching device's keys and arguments in id order
//! and [`ironhub_query::Accumulator`]s compute the aggregates as the in-process evaluation
//! does. Numbers beyond 2^53 are declined: `jsonb` writes `1e19` and `10000000000000000000`
//! alike, which the language keeps apart.

use std::collections::HashMap;

use serde_json::Value;

use ironhub_query::Accumulator;
use ironhub_store::{AggregateOp, Result, TwinAggregate, TwinField, TwinGroup};

use crate::pg_twin_sql::{EXACT_NUMBERS, Params, exact_where, property_path};
use crate::store::{corrupt, db};

/// A field's value as `jsonb` text (`NULL` when missing).
fn json_text(field: &TwinField, params: &mut Params) -> Option<String> {
    if *field == TwinField::DeviceId {
        return Some("to_jsonb(d.device_id)::text".to_owned());
    }
    let path = property_path(field)?;
    Some(format!("(t.doc #> {}::text[])::text", params.add(path)))
}

/// Whether a value holds a number the round trip through `jsonb` may change.
fn has_big_number(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_none_or(|f| f.abs() >= EXACT_NUMBERS),
        Value::Array(items) => items.iter().any(has_big_number),
        Value::Object(map) => map.values().any(has_big_number),
        _ => false,
    }
}

/// A `jsonb` text column as a value (`None`: missing); `Err(None)` declines.
fn parse(text: Option<&str>) -> Result<std::result::Result<Option<Value>, ()>> {
    let Some(text) = text else {
        return Ok(Ok(None));
    };
    let value: Value = serde_json::from_str(text).map_err(corrupt)?;
    Ok(if has_big_number(&value) {
        Err(())
    } else {
        Ok(Some(value))
    })
}

/// The groups of `request` (see `TwinStore::aggregate_twins`), or `None` when they cannot be
/// computed exactly here.
pub(crate) async fn aggregate(
    client: &impl deadpool_postgres::GenericClient,
    request: &TwinAggregate,
) -> Result<Option<Vec<TwinGroup>>> {
    let mut params = Params::default();
    let Some(keys) = request
        .group_by
        .iter()
        .map(|f| json_text(f, &mut params))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let counts_only = request.counts_only();
    // `COUNT(x)` counts documents, as the accumulator does: its argument is not read.
    let args = if counts_only {
        Vec::new()
    } else {
        let args = request.aggregates.iter().map(|(f, field)| match field {
            Some(field) if *f != AggregateOp::Count => json_text(field, &mut params).map(Some),
            _ => Some(None),
        });
        let Some(args) = args.collect::<Option<Vec<_>>>() else {
            return Ok(None);
        };
        args
    };
    let Some(where_clause) = exact_where(&request.conditions, &mut params) else {
        return Ok(None);
    };
    let from = "FROM devices d LEFT JOIN twins t ON t.device_id = d.device_id";
    let n = keys.len();
    let rows = if counts_only {
        let group_by = if n == 0 {
            String::new()
        } else {
            let columns: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
            format!("GROUP BY {}", columns.join(", "))
        };
        let mut select = keys.clone();
        select.extend(["COUNT(*)".to_owned(), "MIN(d.device_id)".to_owned()]);
        let sql = format!(
            "SELECT {} {from} WHERE {where_clause} {group_by} HAVING COUNT(*) > 0
             ORDER BY MIN(d.device_id)",
            select.join(", ")
        );
        client.query(&sql, &params.refs()).await.map_err(db)?
    } else {
        let mut select = vec!["d.device_id".to_owned()];
        select.extend(keys.iter().cloned());
        select.extend(args.iter().flatten().cloned());
        let sql = format!(
            "SELECT {} {from} WHERE {where_clause} ORDER BY d.device_id",
            select.join(", ")
        );
        client.query(&sql, &params.refs()).await.map_err(db)?
    };
    let mut groups: Vec<TwinGroup> = Vec::new();
    let mut accumulators: Vec<Vec<Accumulator>> = Vec::new();
    let mut index: HashMap<Vec<Option<String>>, usize> = HashMap::new();
    for row in &rows {
        let offset = usize::from(!counts_only);
        let texts: Vec<Option<String>> = (0..n).map(|i| row.get(offset + i)).collect();
        let mut key_values = Vec::with_capacity(n);
        for text in &texts {
            match parse(text.as_deref())? {
                Ok(v) => key_values.push(v),
                Err(()) => return Ok(None),
            }
        }
        if counts_only {
            let count = u64::try_from(row.get::<_, i64>(n)).unwrap_or(0);
            groups.push(TwinGroup {
                keys: key_values,
                values: request
                    .aggregates
                    .iter()
                    .map(|_| Some(Value::from(count)))
                    .collect(),
                first: row.get(n + 1),
            });
            continue;
        }
        let id: String = row.get(0);
        let at = *index.entry(texts).or_insert_with(|| {
            groups.push(TwinGroup {
                keys: key_values,
                values: Vec::new(),
                first: id,
            });
            accumulators.push(
                request
                    .aggregates
                    .iter()
                    .map(|(f, _)| Accumulator::new(*f))
                    .collect(),
            );
            groups.len() - 1
        });
        let mut column = 1 + n;
        for (accumulator, arg) in accumulators[at].iter_mut().zip(&args) {
            let value = if arg.is_some() {
                column += 1;
                match parse(row.get::<_, Option<&str>>(column - 1))? {
                    Ok(v) => v,
                    Err(()) => return Ok(None),
                }
            } else {
                None
            };
            accumulator.push(value.as_ref());
        }
    }
    for (group, accumulators) in groups.iter_mut().zip(accumulators) {
        group.values = Accumulator::finish_all(accumulators);
    }
    Ok(Some(groups))
}
