//! `ORDER BY` one twin property with `TOP` on SQLite (`TwinStore::top_twins`). SQLite orders
//! by a rank of the property's JSON type (missing, `null`, booleans, numbers, strings,
//! arrays, objects: the language's order of types), then by its value (`json_extract`:
//! numbers by value, strings byte by byte, which is code point order, `false` before
//! `true`), then by device id, over an expression index built the first time (one per
//! direction, so that ties stay in ascending id order either way). Arrays and objects are
//! ordered otherwise by the language: an answer that holds one is declined.

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};

use chrono::{DateTime, Utc};
use ironhub_store::{DeviceTwin, TwinField, TwinTop};

use crate::error::Result;
use crate::rows::millis;
use crate::sqlite_aggregate::exact_condition;
use crate::sqlite_query::{device_twins, ensure_index, json_path};

/// The rank of arrays: this one and the ones above are not ordered as the language orders.
const FIRST_UNORDERED_RANK: i64 = 5;

/// The rank of the type of the property at `path` of the twin document `doc`.
fn rank(doc: &str, path: &str) -> String {
    format!(
        "(CASE json_type({doc}, '{path}') WHEN 'null' THEN 1 WHEN 'true' THEN 2 \
         WHEN 'false' THEN 2 WHEN 'integer' THEN 3 WHEN 'real' THEN 3 WHEN 'text' THEN 4 \
         WHEN 'array' THEN 5 WHEN 'object' THEN 6 ELSE 0 END)"
    )
}

/// The first devices of `request` (see `TwinStore::top_twins`), or `None` when the answer
/// cannot be given exactly.
pub(crate) fn top(
    conn: &Connection,
    request: &TwinTop,
    now: DateTime<Utc>,
) -> Result<Option<Vec<DeviceTwin>>> {
    let (section, keys) = match &request.order_by {
        TwinField::DeviceId => return Ok(None),
        TwinField::Tags(k) => ("tags", k),
        TwinField::Desired(k) => ("desired", k),
        TwinField::Reported(k) => ("reported", k),
    };
    let Some(path) = json_path(section, keys) else {
        return Ok(None);
    };
    let on_twin = request
        .conditions
        .iter()
        .any(|c| !matches!(c.field, TwinField::DeviceId));
    if !on_twin {
        // A device without a twin row has the property missing, and would rank first: it is
        // not in the index, so decline unless every device has a twin row.
        let (devices, twins): (i64, i64) = conn.query_row(
            "SELECT (SELECT COUNT(*) FROM devices), (SELECT COUNT(*) FROM twins)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if devices != twins {
            return Ok(None);
        }
    }
    let mut params = vec![
        Sql::Integer(millis(now)),
        Sql::Integer(i64::try_from(request.limit).unwrap_or(i64::MAX)),
    ];
    let mut terms = Vec::new();
    for c in &request.conditions {
        match exact_condition(conn, c, &mut params)? {
            Some(term) => terms.push(term),
            None => return Ok(None),
        }
    }
    let (dir, id_dir) = if request.descending {
        ("DESC", " DESC")
    } else {
        ("ASC", "")
    };
    // Walked backwards for DESC, the index gives ties in ascending id order.
    ensure_index(
        conn,
        &format!(
            "{}, json_extract(doc, '{path}'), device_id{id_dir}",
            rank("doc", &path)
        ),
    )?;
    let where_clause = if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    };
    let sql = format!(
        "SELECT d.doc, (SELECT COUNT(*) FROM c2d_messages m
                        WHERE m.device_id = d.device_id AND m.expiry > ?1), t.doc, {rank}
         FROM twins t JOIN devices d ON d.device_id = t.device_id
         {where_clause}
         ORDER BY {rank} {dir}, json_extract(t.doc, '{path}') {dir}, t.device_id ASC
         LIMIT ?2",
        rank = rank("t.doc", &path)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params_from_iter(params), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if rows.iter().any(|r| r.3 >= FIRST_UNORDERED_RANK) {
        return Ok(None);
    }
    device_twins(rows.into_iter().map(|(d, n, t, _)| (d, n, t)).collect()).map(Some)
}
