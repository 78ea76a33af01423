//! `ORDER BY` one twin property with `TOP` on PostgreSQL (`TwinStore::top_twins`): by a rank
//! of the property's `jsonb` type (missing, `null`, booleans, numbers, strings, arrays,
//! objects: the language's order of types), then by its value typed (`false` before `true`,
//! numbers by value, strings `COLLATE "C"`, code point order), then by device id, ascending
//! whatever the direction. Devices without a twin row (left-joined) have the property
//! missing. The language orders arrays and objects otherwise, and compares numbers beyond
//! 2^53 as `f64`: an answer holding one of those is declined.

use ironhub_store::{DeviceTwin, Result, TwinField, TwinTop};

use crate::pg_twin_sql::{Params, device_twin_from_row, exact_where, property_path};
use crate::store::db;

/// The rank of arrays: this one and the ones above are not ordered as the language orders.
const FIRST_UNORDERED_RANK: i32 = 5;

/// The first devices of `request` (see `TwinStore::top_twins`), or `None` when the answer
/// cannot be given exactly.
pub(crate) async fn top(
    client: &impl deadpool_postgres::GenericClient,
    request: &TwinTop,
    now_ms: i64,
) -> Result<Option<Vec<DeviceTwin>>> {
    if request.order_by == TwinField::DeviceId {
        return Ok(None);
    }
    let Some(path) = property_path(&request.order_by) else {
        return Ok(None);
    };
    let mut params = Params::default();
    let now = params.add(now_ms);
    let limit = params.add(i64::try_from(request.limit).unwrap_or(i64::MAX));
    let at = params.add(path);
    let Some(where_clause) = exact_where(&request.conditions, &mut params) else {
        return Ok(None);
    };
    let x = format!("(t.doc #> {at}::text[])");
    let typed = |kind: &str, value: &str| {
        format!("(CASE WHEN jsonb_typeof({x}) = '{kind}' THEN {value} END)")
    };
    let dir = if request.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT d.doc::text, (SELECT COUNT(*) FROM c2d_messages m
                              WHERE m.device_id = d.device_id AND m.expiry > {now}),
                t.doc::text,
                (CASE jsonb_typeof({x}) WHEN 'null' THEN 1 WHEN 'boolean' THEN 2
                 WHEN 'number' THEN 3 WHEN 'string' THEN 4 WHEN 'array' THEN 5
                 WHEN 'object' THEN 6 ELSE 0 END) AS rank,
                COALESCE(abs({big}) >= 9007199254740992, FALSE)
         FROM devices d LEFT JOIN twins t ON t.device_id = d.device_id
         WHERE {where_clause}
         ORDER BY rank {dir}, {boolean} {dir}, {number} {dir}, {string} {dir}, d.device_id ASC
         LIMIT {limit}",
        big = typed("number", &format!("({x})::numeric")),
        boolean = typed("boolean", &format!("({x})::boolean")),
        number = typed("number", &format!("({x})::numeric")),
        string = typed("string", &format!("({x} #>> '{{}}') COLLATE \"C\"")),
    );
    let rows = client.query(&sql, &params.refs()).await.map_err(db)?;
    if rows
        .iter()
        .any(|r| r.get::<_, i32>(3) >= FIRST_UNORDERED_RANK || r.get::<_, bool>(4))
    {
        return Ok(None);
    }
    rows.iter()
        .map(device_twin_from_row)
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
