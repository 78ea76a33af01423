//! The twin scan on SQLite (`TwinStore::scan_twins`): conditions become SQL over the
//! JSON documents (`json_extract`), and each twin property a scan narrows on gets an
//! expression index the first time, so that a selective query reads only the devices it
//! answers (see DESIGN.md, "Twin queries").

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};
use serde_json::Value;

use chrono::{DateTime, Utc};
use ironhub_store::{
    DeviceField, DeviceTwin, ScanCondition, ScanOp, TwinField, TwinRecord, TwinScan,
};

use crate::error::Result;
use crate::rows::{device_from_doc, millis};

/// At most this many expression indexes on twin properties; properties queried after that
/// are filtered without one.
const MAX_PATH_INDEXES: i64 = 32;

/// The SQLite JSON path of a twin property (`$."reported"."powerState"`), when every key is a
/// plain name (letters, digits, `_`, `-`): only such paths are written into SQL.
pub(crate) fn json_path(section: &str, keys: &[String]) -> Option<String> {
    let plain = |k: &str| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if keys.is_empty() || !keys.iter().all(|k| plain(k)) {
        return None;
    }
    let mut path = format!("$.\"{section}\"");
    for k in keys {
        path.push_str(&format!(".\"{k}\""));
    }
    Some(path)
}

/// A JSON scalar as an SQL value comparable with what `json_extract` returns (text for
/// strings, integers and reals for numbers, 1 and 0 for booleans).
pub(crate) fn sql_value(v: &Value) -> Option<Sql> {
    match v {
        Value::String(s) => Some(Sql::Text(s.clone())),
        Value::Bool(b) => Some(Sql::Integer(i64::from(*b))),
        Value::Number(n) => n
            .as_i64()
            .map(Sql::Integer)
            .or_else(|| n.as_f64().map(Sql::Real)),
        _ => None,
    }
}

/// A stable name for the index on `expr`.
pub(crate) fn index_name(expr: &str) -> String {
    // FNV-1a: stable across versions and processes.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in expr.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("twins_by_{hash:016x}")
}

/// Creates the index on a twin property's expression, unless it exists or the cap is reached;
/// whether the index exists afterwards.
pub(crate) fn ensure_index(conn: &Connection, expr: &str) -> Result<bool> {
    let name = index_name(expr);
    let (exists, count): (i64, i64) = conn.query_row(
        "SELECT COALESCE(SUM(name = ?1), 0), COUNT(*) FROM sqlite_master
         WHERE type = 'index' AND name LIKE 'twins_by_%'",
        [&name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if exists == 0 && count < MAX_PATH_INDEXES {
        tracing::info!(index = %name, expression = %expr, "indexing a queried twin property");
        conn.execute_batch(&format!(
            "CREATE INDEX IF NOT EXISTS {name} ON twins ({expr})"
        ))?;
        return Ok(true);
    }
    Ok(exists > 0)
}

/// One condition as SQL (with its parameters), or `None` when it cannot be (the scan then
/// returns more devices, which the caller filters).
fn condition_sql(
    conn: &Connection,
    c: &ScanCondition,
    params: &mut Vec<Sql>,
    joins_twin: &mut bool,
) -> Result<Option<String>> {
    if let TwinField::Device(field) = c.field {
        return Ok(device_condition(c, field));
    }
    let values: Option<Vec<Sql>> = c.values.iter().map(sql_value).collect();
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let column = match &c.field {
        TwinField::DeviceId => {
            if !values.iter().all(|v| matches!(v, Sql::Text(_))) {
                return Ok(None);
            }
            "d.device_id".to_owned()
        }
        TwinField::Device(_) => return Ok(None),
        TwinField::Tags(keys) | TwinField::Desired(keys) | TwinField::Reported(keys) => {
            let section = match &c.field {
                TwinField::Tags(_) => "tags",
                TwinField::Desired(_) => "desired",
                _ => "reported",
            };
            let Some(path) = json_path(section, keys) else {
                return Ok(None);
            };
            let expr = format!("json_extract(doc, '{path}')");
            ensure_index(conn, &expr)?;
            *joins_twin = true;
            format!("json_extract(t.doc, '{path}')")
        }
    };
    // Parameters are numbered (`?4`): the scan's own come first.
    if c.op == ScanOp::In {
        let mut marks = Vec::new();
        for v in values {
            params.push(v);
            marks.push(format!("?{}", params.len()));
        }
        return Ok(Some(format!("{column} IN ({})", marks.join(", "))));
    }
    let Some(value) = values.into_iter().next() else {
        return Ok(None);
    };
    params.push(value);
    Ok(Some(format!(
        "{column} {} ?{}",
        c.op.symbol(),
        params.len()
    )))
}

/// A condition on a registry field as SQL over `d` (devices): the state columns that
/// migration 16 indexes with the device id (so a page of, say, disabled devices is one range
/// of an index, however few there are), or the device document; `None` when it does not
/// narrow (an order, or every value).
fn device_condition(c: &ScanCondition, field: DeviceField) -> Option<String> {
    let (column, admitted, every): (&str, Vec<String>, usize) = match field {
        DeviceField::AuthenticationType => (
            "json_extract(d.doc, '$.authentication.type')",
            // Names from the enumeration only, never the query's text.
            c.auth_types()?
                .iter()
                .map(|t| format!("'{}'", t.as_str()))
                .collect(),
            4,
        ),
        flag => (
            match flag {
                DeviceField::Status => "d.enabled",
                DeviceField::ConnectionState => "d.connected",
                _ => "json_extract(d.doc, '$.iotEdge')",
            },
            c.flags()?
                .iter()
                .map(|f| i64::from(*f).to_string())
                .collect(),
            2,
        ),
    };
    match admitted.as_slice() {
        _ if admitted.len() == every => None,
        [] => Some("0".to_owned()),
        [one] => Some(format!("{column} = {one}")),
        many => Some(format!("{column} IN ({})", many.join(", "))),
    }
}

/// The scan (see `TwinStore::scan_twins`).
pub(crate) fn scan(
    conn: &Connection,
    scan: &TwinScan,
    now: DateTime<Utc>,
) -> Result<Vec<DeviceTwin>> {
    let mut params: Vec<Sql> = vec![
        Sql::Integer(millis(now)),
        Sql::Text(scan.after.clone().unwrap_or_default()),
        Sql::Integer(i64::try_from(scan.limit).unwrap_or(i64::MAX)),
    ];
    let mut joins_twin = false;
    let mut terms = vec!["d.device_id > ?2".to_owned()];
    for c in &scan.conditions {
        if let Some(term) = condition_sql(conn, c, &mut params, &mut joins_twin)? {
            terms.push(term);
        }
    }
    // A condition on the twin can only hold for a device that has one: an inner join lets
    // SQLite start from the property's index.
    let join = if joins_twin { "JOIN" } else { "LEFT JOIN" };
    let sql = format!(
        "SELECT d.doc, (SELECT COUNT(*) FROM c2d_messages m
                        WHERE m.device_id = d.device_id AND m.expiry > ?1), t.doc
         FROM devices d {join} twins t ON t.device_id = d.device_id
         WHERE {} ORDER BY d.device_id LIMIT ?3",
        terms.join(" AND ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params_from_iter(params), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u64>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    device_twins(rows)
}

/// Devices with their twins from rows of (device document, queued message count, twin
/// document).
pub(crate) fn device_twins(rows: Vec<(String, u64, Option<String>)>) -> Result<Vec<DeviceTwin>> {
    rows.into_iter()
        .map(|(device, count, twin)| {
            let twin: Option<TwinRecord> = twin.map(|t| serde_json::from_str(&t)).transpose()?;
            Ok((device_from_doc(&device, count)?, twin))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// An in-memory database with the tables twin queries read (and none of their rows).
    pub(crate) fn scratch() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE devices (device_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
             CREATE TABLE twins (device_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
             CREATE TABLE c2d_messages (device_id TEXT, expiry INTEGER);",
        )
        .unwrap();
        conn
    }

    #[test]
    fn only_plain_keys_are_written_into_sql() {
        assert_eq!(
            json_path("reported", &["powerState".into(), "a-b_1".into()]).as_deref(),
            Some("$.\"reported\".\"powerState\".\"a-b_1\"")
        );
        assert_eq!(
            json_path("tags", &["x'); DROP TABLE twins; --".into()]),
            None
        );
        assert_eq!(json_path("tags", &["$version".into()]), None);
        assert_eq!(json_path("tags", &[]), None);
    }
}
