//! The SQL the twin queries share: a twin query's conditions written over `d` (devices) and
//! `t` (twins, left- or inner-joined), and the statement parameters they bind. Equality and
//! `IN` become containment (`doc @> '{"reported":{"powerState":"0"}}'`, which the GIN index of
//! migration 2 serves) for a scan, which may return more devices than asked, or typed `jsonb`
//! equality where the answer must be exact; ranges become typed comparisons, the device id a
//! comparison of the primary key. A condition that cannot be written exactly is left out of a
//! scan (the caller checks every device anyway, see `TwinScan::conditions`) and makes an exact
//! query decline.

use serde_json::Value;
use tokio_postgres::types::ToSql;

use ironhub_store::{DeviceField, DeviceTwin, Result, ScanCondition, ScanOp, TwinField};

use crate::pg_registry::device_from_row;
use crate::store::corrupt;

/// Numbers further from zero than this are not pushed down: the query language compares them
/// as `f64`, PostgreSQL exactly, and beyond 2^53 the two may disagree.
pub(crate) const EXACT_NUMBERS: f64 = 9_007_199_254_740_992.0;

/// The statement parameters of a query, numbered in the order they are added.
#[derive(Default)]
pub(crate) struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    /// Adds a parameter and returns its placeholder (`$4`).
    pub(crate) fn add(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }

    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
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
pub(crate) fn property_path(field: &TwinField) -> Option<Vec<String>> {
    let (section, keys) = match field {
        TwinField::DeviceId | TwinField::Device(_) => return None,
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
/// `None` when it cannot be written exactly. With `exact`, the SQL holds exactly when the
/// language's comparison does; without, it may hold for more twins (to use the index).
pub(crate) fn condition_sql(
    c: &ScanCondition,
    params: &mut Params,
    exact: bool,
) -> Option<(String, bool)> {
    if c.values.is_empty() || !c.values.iter().all(pushable) {
        return None;
    }
    if let TwinField::Device(field) = c.field {
        return device_condition(c, field, params).map(|sql| (sql, false));
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
            let op = c.op.symbol();
            (format!("d.device_id {op} {}::text", params.add(id)), false)
        });
    }
    let path = property_path(&c.field)?;
    if exact && matches!(c.op, ScanOp::Eq | ScanOp::In) {
        // `jsonb` equality is typed, numbers by value; a missing property is `NULL`.
        let texts: Vec<String> = c.values.iter().map(Value::to_string).collect();
        let at = params.add(path);
        let any = params.add(texts);
        return Some((
            format!("(t.doc #> {at}::text[]) = ANY({any}::text[]::jsonb[])"),
            true,
        ));
    }
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
    let op = c.op.symbol();
    // Only values of the bound's type compare.
    Some((
        format!(
            "(CASE WHEN jsonb_typeof(t.doc #> {at}::text[]) = '{kind}'
                   THEN (t.doc #>> {at}::text[])::{cast} END){collate} {op} {bound}::text::{cast}"
        ),
        true,
    ))
}

/// A condition on a registry field as SQL over `d` (devices), exact: the state columns that
/// migration 8 indexes with the device id (a page of, say, disabled devices is one range of
/// an index), or the device document; `None` for an order.
fn device_condition(c: &ScanCondition, field: DeviceField, params: &mut Params) -> Option<String> {
    if field == DeviceField::AuthenticationType {
        let names: Vec<String> = c
            .auth_types()?
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        return Some(format!(
            "(d.doc #>> '{{authentication,type}}') = ANY({}::text[])",
            params.add(names)
        ));
    }
    let column = match field {
        DeviceField::Status => "d.enabled",
        DeviceField::ConnectionState => "d.connected",
        _ => "(d.doc -> 'iotEdge')::boolean",
    };
    Some(match c.flags()?.as_slice() {
        [] => "FALSE".to_owned(),
        [one] => format!("{column} = {}", params.add(*one)),
        _ => "TRUE".to_owned(),
    })
}

/// Every condition as SQL that holds exactly when the language's comparison does (`TRUE`
/// for none), or `None` when one cannot be written so.
pub(crate) fn exact_where(conditions: &[ScanCondition], params: &mut Params) -> Option<String> {
    let mut terms = vec!["TRUE".to_owned()];
    for c in conditions {
        terms.push(condition_sql(c, params, true)?.0);
    }
    Some(terms.join(" AND "))
}

/// A device and its twin from a row of the device document, its live message count and the
/// twin document (`NULL` without one).
pub(crate) fn device_twin_from_row(row: &tokio_postgres::Row) -> Result<DeviceTwin> {
    let twin = row
        .get::<_, Option<&str>>(2)
        .map(serde_json::from_str)
        .transpose()
        .map_err(corrupt)?;
    Ok((device_from_row(row)?, twin))
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
            assert_eq!(condition_sql(&c, &mut params, false), None, "{c:?}");
        }
        assert!(params.0.is_empty());
        let (sql, on_twin) = condition_sql(
            &condition(t(), ScanOp::Le, vec![json!(2.5)]),
            &mut params,
            false,
        )
        .unwrap();
        assert!(on_twin);
        assert!(sql.contains("'number'") && sql.contains("<= $1::text::numeric"));
        assert!(!sql.contains("COLLATE"));
        let (sql, _) = condition_sql(
            &condition(t(), ScanOp::Gt, vec![json!("m")]),
            &mut params,
            false,
        )
        .unwrap();
        assert!(sql.contains("COLLATE \"C\" > $3::text::text"), "{sql}");
    }
}
