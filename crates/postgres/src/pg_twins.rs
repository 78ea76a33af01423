//! Device twins on PostgreSQL: each twin one `jsonb` document, written compare-and-swap on its
//! etag under its device's row lock, and the twin scan that queries read through. A scan's
//! conditions become SQL over the documents: equality and `IN` as containment (`@>`, served by
//! the GIN index of migration 2), ranges as typed comparisons, the device id over the primary
//! key. A condition that cannot be written exactly is left to the caller, who checks every
//! device anyway (see `TwinScan::conditions`).

use async_trait::async_trait;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use ironhub_store::{
    DeviceTwin, Result, ScanCondition, ScanOp, TwinField, TwinRecord, TwinScan, TwinStore,
    WriteConflict,
};

use crate::PgStore;
use crate::pg_registry::device_from_row;
use crate::store::{corrupt, db, next_etag, tag_matches};

/// Numbers further from zero than this are not pushed down: the query language compares them
/// as `f64`, PostgreSQL exactly, and beyond 2^53 the two may disagree.
const EXACT_NUMBERS: f64 = 9_007_199_254_740_992.0;

/// The statement parameters of a scan, numbered in the order they are added.
#[derive(Default)]
struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    /// Adds a parameter and returns its placeholder (`$4`).
    fn add(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

fn operator(op: ScanOp) -> &'static str {
    match op {
        ScanOp::Eq | ScanOp::In => "=",
        ScanOp::Lt => "<",
        ScanOp::Le => "<=",
        ScanOp::Gt => ">",
        ScanOp::Ge => ">=",
    }
}

/// Whether PostgreSQL compares `value` as the query language does: a string without NUL
/// (which `jsonb` cannot hold), a boolean, or a number within `EXACT_NUMBERS`.
fn pushable(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.contains('\0'),
        Value::Bool(_) => true,
        Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() < EXACT_NUMBERS),
        _ => false,
    }
}

/// The twin section and keys of a property field (`None` for the device id or an empty path).
fn property_path(field: &TwinField) -> Option<Vec<String>> {
    let (section, keys) = match field {
        TwinField::DeviceId => return None,
        TwinField::Tags(keys) => ("tags", keys),
        TwinField::Desired(keys) => ("desired", keys),
        TwinField::Reported(keys) => ("reported", keys),
    };
    if keys.is_empty() {
        return None;
    }
    let mut path = vec![section.to_owned()];
    path.extend(keys.iter().cloned());
    Some(path)
}

/// The smallest document containing `value` at `path` (`{"reported": {"t": 1}}`).
fn containing(path: &[String], value: &Value) -> String {
    let doc = path.iter().rev().fold(value.clone(), |inner, key| {
        Value::Object(serde_json::Map::from_iter([(key.clone(), inner)]))
    });
    doc.to_string()
}

/// One condition as SQL over `d` (devices) and `t` (twins), and whether it reads the twin;
/// `None` when it cannot be written exactly.
fn condition_sql(c: &ScanCondition, params: &mut Params) -> Option<(String, bool)> {
    if c.values.is_empty() || !c.values.iter().all(pushable) {
        return None;
    }
    if c.field == TwinField::DeviceId {
        let ids: Option<Vec<String>> = c
            .values
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect();
        let mut ids = ids?;
        return Some(if matches!(c.op, ScanOp::Eq | ScanOp::In) {
            (
                format!("d.device_id = ANY({}::text[])", params.add(ids)),
                false,
            )
        } else {
            let id = ids.pop()?;
            let op = operator(c.op);
            (format!("d.device_id {op} {}::text", params.add(id)), false)
        });
    }
    let path = property_path(&c.field)?;
    if matches!(c.op, ScanOp::Eq | ScanOp::In) {
        // Containment is typed (`"0"` does not contain `0`) and may only take more devices
        // than asked (an array contains its elements): never fewer.
        let alternatives: Vec<String> = c
            .values
            .iter()
            .map(|v| {
                let doc = params.add(containing(&path, v));
                format!("t.doc @> {doc}::text::jsonb")
            })
            .collect();
        return Some((format!("({})", alternatives.join(" OR ")), true));
    }
    let value = c.values.first()?;
    let (kind, cast, collate, bound) = match value {
        Value::Number(_) => ("number", "numeric", "", params.add(value.to_string())),
        // Strings by code point.
        Value::String(s) => ("string", "text", " COLLATE \"C\"", params.add(s.clone())),
        // The language orders only numbers and strings.
        _ => return None,
    };
    let at = params.add(path);
    let op = operator(c.op);
    // Only values of the bound's type compare.
    Some((
        format!(
            "(CASE WHEN jsonb_typeof(t.doc #> {at}::text[]) = '{kind}'
                   THEN (t.doc #>> {at}::text[])::{cast} END){collate} {op} {bound}::text::{cast}"
        ),
        true,
    ))
}

/// The scan (see `TwinStore::scan_twins`).
async fn scan(
    client: &impl deadpool_postgres::GenericClient,
    scan: &TwinScan,
    now_ms: i64,
) -> Result<Vec<DeviceTwin>> {
    let mut params = Params::default();
    let now = params.add(now_ms);
    let after = params.add(scan.after.clone().unwrap_or_default());
    let limit = params.add(i64::try_from(scan.limit).unwrap_or(i64::MAX));
    let mut terms = vec![format!("d.device_id > {after}")];
    let mut joins_twin = false;
    for c in &scan.conditions {
        if let Some((term, on_twin)) = condition_sql(c, &mut params) {
            terms.push(term);
            joins_twin |= on_twin;
        }
    }
    // A condition on the twin holds only for a device that has one.
    let join = if joins_twin { "JOIN" } else { "LEFT JOIN" };
    let sql = format!(
        "SELECT d.doc::text, (SELECT COUNT(*) FROM c2d_messages m
                              WHERE m.device_id = d.device_id AND m.expiry > {now}),
                t.doc::text
         FROM devices d {join} twins t ON t.device_id = d.device_id
         WHERE {} ORDER BY d.device_id LIMIT {limit}",
        terms.join(" AND ")
    );
    let rows = client.query(&sql, &params.refs()).await.map_err(db)?;
    rows.iter()
        .map(|row| {
            let twin = row
                .get::<_, Option<&str>>(2)
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?;
            Ok((device_from_row(row)?, twin))
        })
        .collect()
}

async fn load_twin(
    client: &impl deadpool_postgres::GenericClient,
    device_id: &str,
) -> Result<Option<TwinRecord>> {
    let row = client
        .query_opt(
            "SELECT doc::text FROM twins WHERE device_id = $1",
            &[&device_id],
        )
        .await
        .map_err(db)?;
    row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(corrupt))
        .transpose()
}

#[async_trait]
impl TwinStore for PgStore {
    async fn get_twin(&self, device_id: &str) -> Result<Option<TwinRecord>> {
        load_twin(&self.client().await?, device_id).await
    }

    async fn put_twin(
        &self,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<TwinRecord, WriteConflict>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        // The device's row lock orders every write of its twin (and its deletion): the etag
        // read below is the one the write replaces.
        let device = tx
            .query_opt(
                "SELECT 1 FROM devices WHERE device_id = $1 FOR UPDATE",
                &[&twin.device_id],
            )
            .await
            .map_err(db)?;
        if device.is_none() {
            return Ok(Err(WriteConflict::NotFound));
        }
        let current = load_twin(&tx, &twin.device_id)
            .await?
            .map(|t| t.etag)
            .unwrap_or_default();
        if if_match.is_some_and(|tag| !tag_matches(&current, &tag)) {
            return Ok(Err(WriteConflict::EtagMismatch));
        }
        let mut twin = twin;
        twin.etag = next_etag(&tx).await?;
        let doc = serde_json::to_string(&twin).map_err(corrupt)?;
        tx.execute(
            "INSERT INTO twins (device_id, doc) VALUES ($1, $2::text::jsonb)
             ON CONFLICT (device_id) DO UPDATE SET doc = excluded.doc",
            &[&twin.device_id, &doc],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Ok(twin))
    }

    async fn scan_twins(&self, request: &TwinScan) -> Result<Vec<DeviceTwin>> {
        let now = self.clock.now().timestamp_millis();
        scan(&self.client().await?, request, now).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containment_documents_nest_the_path() {
        let path = vec!["reported".to_owned(), "a".to_owned(), "b'c".to_owned()];
        assert_eq!(
            containing(&path, &json!("0")),
            r#"{"reported":{"a":{"b'c":"0"}}}"#
        );
    }

    #[test]
    fn only_exact_comparisons_are_pushed_down() {
        let condition = |field, op, values| ScanCondition { field, op, values };
        let t = || TwinField::Reported(vec!["t".into()]);
        let mut params = Params::default();
        // Booleans, NUL, huge numbers, nested values and non-string ids are left to the caller.
        for c in [
            condition(t(), ScanOp::Gt, vec![json!(true)]),
            condition(t(), ScanOp::Eq, vec![json!("a\0b")]),
            condition(t(), ScanOp::Eq, vec![json!(1e300)]),
            condition(t(), ScanOp::Eq, vec![json!({"a": 1})]),
            condition(t(), ScanOp::In, vec![]),
            condition(TwinField::DeviceId, ScanOp::Eq, vec![json!(1)]),
            condition(TwinField::Tags(vec![]), ScanOp::Eq, vec![json!(1)]),
        ] {
            assert_eq!(condition_sql(&c, &mut params), None, "{c:?}");
        }
        assert!(params.0.is_empty());
        let (sql, on_twin) =
            condition_sql(&condition(t(), ScanOp::Le, vec![json!(2.5)]), &mut params).unwrap();
        assert!(on_twin);
        assert!(sql.contains("'number'") && sql.contains("<= $1::text::numeric"));
        assert!(!sql.contains("COLLATE"));
        let (sql, _) =
            condition_sql(&condition(t(), ScanOp::Gt, vec![json!("m")]), &mut params).unwrap();
        assert!(sql.contains("COLLATE \"C\" > $3::text::text"), "{sql}");
    }
}
