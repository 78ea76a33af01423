//! A twin property as a typed key that SQLite can index and compare exactly as the query
//! language does: the rank of its JSON type (missing, `null`, booleans, numbers, strings,
//! arrays, objects: the language's order of types) and `json_extract`'s value (numbers by
//! value, so `1` and `1.0` are equal; strings byte by byte, which is code point order;
//! booleans as 1 and 0). A comparison holds only within one type (`'1'` is not `1`, a range
//! on numbers never matches a string, a missing property matches nothing), so a condition
//! becomes "rank is the literal's, and the value compares": both are columns of an index,
//! and SQLite answers it from the index alone.

use rusqlite::types::Value as Sql;
use serde_json::Value;

use ironhub_store::{ScanCondition, ScanOp};

use crate::sqlite_query::sql_value;

/// The rank of the type of the property at `path` of the twin document `doc`.
pub(crate) fn rank(doc: &str, path: &str) -> String {
    format!(
        "(CASE json_type({doc}, '{path}') WHEN 'null' THEN 1 WHEN 'true' THEN 2 \
         WHEN 'false' THEN 2 WHEN 'integer' THEN 3 WHEN 'real' THEN 3 WHEN 'text' THEN 4 \
         WHEN 'array' THEN 5 WHEN 'object' THEN 6 ELSE 0 END)"
    )
}

/// The value of the property at `path` of the twin document `doc`, as SQLite compares it.
pub(crate) fn value(doc: &str, path: &str) -> String {
    format!("json_extract({doc}, '{path}')")
}

/// Numbers at least this large (2^53) are compared by the language as `f64`s and by SQLite
/// exactly (an integer with a real): literals that large are not pushed down.
const EXACT_NUMBERS: f64 = 9_007_199_254_740_992.0;

/// Whether SQLite compares a literal exactly as the language does: strings and booleans
/// always, numbers below 2^53 in magnitude.
pub(crate) fn exact_literal(v: &Value) -> bool {
    match v {
        Value::String(_) | Value::Bool(_) => true,
        Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() < EXACT_NUMBERS),
        _ => false,
    }
}

/// The rank of a literal's type (see [`rank`]).
fn literal_rank(v: &Value) -> Option<i64> {
    match v {
        Value::Bool(_) => Some(2),
        Value::Number(_) => Some(3),
        Value::String(_) => Some(4),
        _ => None,
    }
}

/// The condition `c` on the property at `path` of `t.doc` as exact SQL over its rank and
/// value (the expressions [`rank`] and [`value`] give, so that an index of them answers it),
/// with its parameters added to `params`; `None` when it cannot be written exactly
/// (a literal that is not a string, a boolean or a number below 2^53; an order on booleans).
pub(crate) fn condition(path: &str, c: &ScanCondition, params: &mut Vec<Sql>) -> Option<String> {
    if c.values.is_empty() || !c.values.iter().all(exact_literal) {
        return None;
    }
    // The language does not order booleans: left to the hub.
    let ordered = !matches!(c.op, ScanOp::Eq | ScanOp::In);
    if ordered && c.values.iter().any(Value::is_boolean) {
        return None;
    }
    let (r, v) = (rank("t.doc", path), value("t.doc", path));
    let mut marks = Vec::new();
    let mut terms = Vec::new();
    let mut ranks: Vec<i64> = Vec::new();
    for literal in &c.values {
        let lr = literal_rank(literal)?;
        params.push(sql_value(literal)?);
        let m = format!("?{}", params.len());
        terms.push(format!("({r} = {lr} AND {v} {} {m})", c.op.symbol()));
        marks.push(m);
        if !ranks.contains(&lr) {
            ranks.push(lr);
        }
    }
    if let [term] = terms.as_slice() {
        return Some(term.clone());
    }
    // `IN` of several values: the plain `IN`s let SQLite probe the index for each (rank,
    // value) pair; the typed terms keep `1` and `'1'` (and `true`, also 1) apart.
    let ranks: Vec<String> = ranks.iter().map(i64::to_string).collect();
    Some(format!(
        "{r} IN ({}) AND {v} IN ({}) AND ({})",
        ranks.join(", "),
        marks.join(", "),
        terms.join(" OR ")
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ironhub_store::TwinField;
    use rusqlite::params_from_iter;

    /// Which of a few stored values each condition selects, as the language decides it.
    #[test]
    fn conditions_hold_within_one_type() {
        let conn = crate::sqlite_query::tests::scratch();
        let docs = [
            ("int", r#"{"reported":{"p":1}}"#),
            ("real", r#"{"reported":{"p":1.0}}"#),
            ("text", r#"{"reported":{"p":"1"}}"#),
            ("true", r#"{"reported":{"p":true}}"#),
            ("null", r#"{"reported":{"p":null}}"#),
            ("missing", r#"{"reported":{}}"#),
            ("big", r#"{"reported":{"p":25}}"#),
            ("word", r#"{"reported":{"p":"b"}}"#),
        ];
        for (id, doc) in docs {
            conn.execute("INSERT INTO twins VALUES (?1, ?2)", [id, doc])
                .unwrap();
        }
        let path = "$.\"reported\".\"p\"";
        let select = |op: ScanOp, values: Vec<Value>| -> Option<Vec<String>> {
            let c = ScanCondition {
                field: TwinField::Reported(vec!["p".into()]),
                op,
                values,
            };
            let mut params = Vec::new();
            let term = condition(path, &c, &mut params)?;
            let sql = format!("SELECT device_id FROM twins t WHERE {term} ORDER BY device_id");
            let mut stmt = conn.prepare(&sql).unwrap();
            let ids = stmt
                .query_map(params_from_iter(params), |r| r.get::<_, String>(0))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap();
            Some(ids)
        };
        use serde_json::json;
        assert_eq!(select(ScanOp::Eq, vec![json!(1)]).unwrap(), ["int", "real"]);
        assert_eq!(
            select(ScanOp::Eq, vec![json!(1.0)]).unwrap(),
            ["int", "real"]
        );
        assert_eq!(select(ScanOp::Eq, vec![json!("1")]).unwrap(), ["text"]);
        assert_eq!(select(ScanOp::Eq, vec![json!(true)]).unwrap(), ["true"]);
        assert_eq!(
            select(ScanOp::Ge, vec![json!(1)]).unwrap(),
            ["big", "int", "real"]
        );
        assert_eq!(select(ScanOp::Gt, vec![json!("1")]).unwrap(), ["word"]);
        assert_eq!(select(ScanOp::Lt, vec![json!(2)]).unwrap(), ["int", "real"]);
        assert_eq!(
            select(ScanOp::In, vec![json!("1"), json!(25), json!(true)]).unwrap(),
            ["big", "text", "true"]
        );
        assert_eq!(select(ScanOp::Gt, vec![json!(true)]), None);
        assert_eq!(select(ScanOp::Eq, vec![json!(1e16)]), None);
        assert_eq!(select(ScanOp::Eq, vec![Value::Null]), None);
    }
}
