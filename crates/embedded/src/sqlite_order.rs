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
use crate::sqlite_aggregate::{device_id_passes, exact_condition};
use crate::sqlite_query::{device_twins, ensure_index, json_path};
use crate::sqlite_typed::rank;

/// The rank of arrays: this one and the ones above are not ordered as the language orders.
const FIRST_UNORDERED_RANK: i64 = 5;

/// The first devices of `request` (see `TwinStore::top_twins`), or `None` when the answer
/// cannot be given exactly.
pub(crate) fn top(
    conn: &Connection,
    request: &TwinTop,
    now: DateTime<Utc>,
) -> Result<Option<Vec<DeviceTwin>>> {
    let (section, keys) = match &request.order_by {
        TwinField::DeviceId | TwinField::Device(_) => return Ok(None),
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
    let sql = top_sql(&path, dir, &where_clause);
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
    let mut found = device_twins(
        rows.iter()
            .map(|(d, n, t, _)| (d.clone(), *n, t.clone()))
            .collect(),
    )?
    .into_iter()
    .zip(rows.iter().map(|r| r.3))
    .collect::<Vec<_>>();
    if !on_twin {
        // Devices without a twin row have the property missing (rank 0): they are not in the
        // index, and join the devices of rank 0 in id order.
        let twinless = twinless(conn, request, now)?;
        if !twinless.is_empty() {
            found.extend(twinless.into_iter().map(|d| (d, 0)));
            let descending = request.descending;
            found.sort_by(|(a, ra), (b, rb)| {
                let by_rank = if descending { rb.cmp(ra) } else { ra.cmp(rb) };
                by_rank.then_with(|| {
                    if *ra == 0 {
                        a.0.device_id.cmp(&b.0.device_id)
                    } else {
                        std::cmp::Ordering::Equal
                    }
                })
            });
            found.truncate(request.limit);
        }
    }
    Ok(Some(found.into_iter().map(|(d, _)| d).collect()))
}

/// The SQL of the first twins ordered by the property at `path`, `dir` `ASC` or `DESC`.
fn top_sql(path: &str, dir: &str, where_clause: &str) -> String {
    format!(
        "SELECT d.doc, (SELECT COUNT(*) FROM c2d_messages m
                        WHERE m.device_id = d.device_id AND m.expiry > ?1), t.doc, {rank}
         FROM twins t JOIN devices d ON d.device_id = t.device_id
         {where_clause}
         ORDER BY {rank} {dir}, json_extract(t.doc, '{path}') {dir}, t.device_id ASC
         LIMIT ?2",
        rank = rank("t.doc", path)
    )
}

/// The first devices without a twin row that pass the conditions (on the device id), in id
/// order, at most `request.limit`.
fn twinless(conn: &Connection, request: &TwinTop, now: DateTime<Utc>) -> Result<Vec<DeviceTwin>> {
    let (devices, twins): (i64, i64) = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM devices), (SELECT COUNT(*) FROM twins)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if devices == twins {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT d.doc, (SELECT COUNT(*) FROM c2d_messages m
                        WHERE m.device_id = d.device_id AND m.expiry > ?1), d.device_id
         FROM devices d
         WHERE NOT EXISTS (SELECT 1 FROM twins t WHERE t.device_id = d.device_id)
         ORDER BY d.device_id",
    )?;
    let mut rows = stmt.query([millis(now)])?;
    let mut out = Vec::new();
    while out.len() < request.limit
        && let Some(r) = rows.next()?
    {
        let id: String = r.get(2)?;
        if request.conditions.iter().all(|c| device_id_passes(&id, c)) {
            out.push((r.get::<_, String>(0)?, r.get::<_, u64>(1)?, None));
        }
    }
    device_twins(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Either way, SQLite walks the property's index and stops after `TOP`: no sort.
    #[test]
    fn the_first_twins_come_from_the_index_without_a_sort() {
        let conn = crate::sqlite_query::tests::scratch();
        let path = json_path("reported", &["t".into()]).unwrap();
        for (dir, id_dir) in [("ASC", ""), ("DESC", " DESC")] {
            ensure_index(
                &conn,
                &format!(
                    "{}, json_extract(doc, '{path}'), device_id{id_dir}",
                    rank("doc", &path)
                ),
            )
            .unwrap();
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", top_sql(&path, dir, "")))
                .unwrap()
                .query_map([0, 10], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(
                plan.iter()
                    .any(|s| s.starts_with("SCAN t USING INDEX twins_by_"))
                    && !plan.iter().any(|s| s.contains("TEMP B-TREE")),
                "{dir}: {plan:?}"
            );
        }
    }
}
