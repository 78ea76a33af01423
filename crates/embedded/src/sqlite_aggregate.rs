//! `GROUP BY` on SQLite (`TwinStore::aggregate_twins`). A group key is the JSON text of the
//! property (`doc -> '$."tags"."floor"'`: `'0'` and `0` are apart, `null` is the text `null`
//! and a missing property SQL `NULL`), so SQLite's grouping is the language's.
//!
//! One expression index answers a query of a shape (built the first time, within the caps):
//! its conditions on twin properties (an equality as the property's JSON text, any other
//! comparison as its type rank and value, `sqlite_typed`), the group keys, the device id and
//! the aggregates' arguments, so that SQLite reads that index alone, in (keys, device id)
//! order. `COUNT()` is counted by SQLite; other aggregates read each group's values in
//! device id order and feed [`ironhub_query::Accumulator`]s, as the in-process evaluation
//! does. Past the caps, conditions are typed (`json_type`) over the twins their properties'
//! indexes select.

use std::collections::HashMap;

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};
use serde_json::Value;

use ironhub_query::Accumulator;
use ironhub_store::{AggregateOp, ScanCondition, ScanOp, TwinAggregate, TwinField, TwinGroup};

use crate::error::Result;
use crate::sqlite_query::{ensure_index, index_name, json_path, sql_value};
use crate::sqlite_typed;

/// A field as SQL over `twins t`: its JSON text, or (the device id) plain text.
#[derive(Clone)]
enum Column {
    Id,
    Json(String),
}

impl Column {
    fn of(field: &TwinField) -> Option<Column> {
        let (section, keys) = match field {
            TwinField::DeviceId => return Some(Column::Id),
            // Registry fields are on `devices`, which the aggregates do not read.
            TwinField::Device(_) => return None,
            TwinField::Tags(k) => ("tags", k),
            TwinField::Desired(k) => ("desired", k),
            TwinField::Reported(k) => ("reported", k),
        };
        json_path(section, keys).map(Column::Json)
    }

    /// The expression giving the field's JSON text (or the id), `NULL` when missing.
    fn text(&self) -> String {
        match self {
            Column::Id => "t.device_id".to_owned(),
            Column::Json(path) => format!("t.doc -> '{path}'"),
        }
    }

    /// The expression as an index on `twins` writes it.
    fn indexed(&self) -> String {
        match self {
            Column::Id => "device_id".to_owned(),
            Column::Json(path) => format!("doc -> '{path}'"),
        }
    }

    /// A value of this column as JSON.
    fn value(&self, text: Option<String>) -> Result<Option<Value>> {
        Ok(match (self, text) {
            (_, None) => None,
            (Column::Id, Some(id)) => Some(Value::String(id)),
            (Column::Json(_), Some(t)) => Some(serde_json::from_str(&t)?),
        })
    }
}

/// The `json_type` names of a value's type.
fn json_types(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "'text'",
        Value::Number(_) => "'integer', 'real'",
        Value::Bool(true) => "'true'",
        Value::Bool(false) => "'false'",
        _ => "NULL",
    }
}

/// One condition as exact SQL, or `None` when it cannot be written exactly.
pub(crate) fn exact_condition(
    conn: &Connection,
    c: &ScanCondition,
    params: &mut Vec<Sql>,
) -> Result<Option<String>> {
    if c.values.is_empty() || !c.values.iter().all(sqlite_typed::exact_literal) {
        return Ok(None);
    }
    // Booleans are only equal or not: the language does not order them.
    if c.op != ScanOp::Eq && c.op != ScanOp::In && c.values.iter().any(Value::is_boolean) {
        return Ok(None);
    }
    let mut mark = |v: &Value| {
        params.extend(sql_value(v));
        format!("?{}", params.len())
    };
    let Some(column) = Column::of(&c.field) else {
        return Ok(None);
    };
    let path = match &column {
        Column::Id => {
            if !c.values.iter().all(Value::is_string) {
                return Ok(None);
            }
            let marks: Vec<String> = c.values.iter().map(&mut mark).collect();
            return Ok(Some(if c.op == ScanOp::In {
                format!("t.device_id IN ({})", marks.join(", "))
            } else {
                format!("t.device_id {} {}", c.op.symbol(), marks[0])
            }));
        }
        Column::Json(path) => path.clone(),
    };
    let extract = format!("json_extract(t.doc, '{path}')");
    ensure_index(conn, &format!("json_extract(doc, '{path}')"))?;
    let typed = |v: &Value, test: String| {
        format!(
            "(json_type(t.doc, '{path}') IN ({}) AND {test})",
            json_types(v)
        )
    };
    if c.op == ScanOp::In {
        let mut all = Vec::new();
        let mut terms = Vec::new();
        for v in &c.values {
            let m = mark(v);
            all.push(m.clone());
            terms.push(typed(v, format!("{extract} = {m}")));
        }
        // The plain `IN` lets SQLite use the index; the typed terms make it exact.
        return Ok(Some(format!(
            "{extract} IN ({}) AND ({})",
            all.join(", "),
            terms.join(" OR ")
        )));
    }
    let v = &c.values[0];
    let m = mark(v);
    Ok(Some(format!(
        "{extract} {} {m} AND {}",
        c.op.symbol(),
        typed(v, "1".to_owned())
    )))
}

/// A string or boolean as the JSON text SQLite's `->` gives for it in a stored document
/// (documents are written by `serde_json`, so a string's text is the canonical one), or
/// `None` for a value whose text is not one spelling of it: numbers (`1` and `1.0` are
/// equal in the language) and strings with escapes (kept out for safety).
fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(b.to_string()),
        Value::String(s) => {
            let text = Value::String(s.clone()).to_string();
            (!text[1..text.len() - 1].contains('\\')).then_some(text)
        }
        _ => None,
    }
}

/// A condition on a twin property as the push-down index holds it.
enum Key<'a> {
    /// An equality that the property's JSON text decides ([`json_text`]): one column.
    Text { path: String, text: String },
    /// Any other comparison (numbers, ranges, `IN` of several values): two columns, the
    /// property's type rank and value (`sqlite_typed`).
    Typed {
        path: String,
        condition: &'a ScanCondition,
    },
}

impl Key<'_> {
    /// The key's expressions as an index on `twins` writes them.
    fn columns(&self) -> Vec<String> {
        match self {
            Key::Text { path, .. } => vec![format!("doc -> '{path}'")],
            Key::Typed { path, .. } => {
                vec![
                    sqlite_typed::rank("doc", path),
                    sqlite_typed::value("doc", path),
                ]
            }
        }
    }

    /// Whether the key selects one value, so that the index's next columns stay in order
    /// within what it selects.
    fn point(&self) -> bool {
        match self {
            Key::Text { .. } => true,
            Key::Typed { condition, .. } => {
                condition.values.len() == 1 && matches!(condition.op, ScanOp::Eq | ScanOp::In)
            }
        }
    }

    /// The condition over the key's columns, with its parameters added to `params`.
    fn term(&self, params: &mut Vec<Sql>) -> Option<String> {
        match self {
            Key::Text { path, text } => {
                params.push(Sql::Text(text.clone()));
                Some(format!("t.doc -> '{path}' = ?{}", params.len()))
            }
            Key::Typed { path, condition } => sqlite_typed::condition(path, condition, params),
        }
    }
}

/// The conditions on twin properties as index keys: the points first, then the others,
/// each sorted by their columns (so that `a AND b` and `b AND a` share an index); `None`
/// when one of them cannot be written exactly.
fn condition_keys(conditions: &[ScanCondition]) -> Option<Vec<Key<'_>>> {
    let mut keys = Vec::new();
    for c in conditions {
        let (section, names) = match &c.field {
            TwinField::DeviceId => continue,
            TwinField::Device(_) => return None,
            TwinField::Tags(k) => ("tags", k),
            TwinField::Desired(k) => ("desired", k),
            TwinField::Reported(k) => ("reported", k),
        };
        let path = json_path(section, names)?;
        if !c.values.iter().all(sqlite_typed::exact_literal) || c.values.is_empty() {
            return None;
        }
        // The language does not order booleans: left to the hub.
        let ordered = !matches!(c.op, ScanOp::Eq | ScanOp::In);
        if ordered && c.values.iter().any(Value::is_boolean) {
            return None;
        }
        let single = c.op == ScanOp::Eq || (c.op == ScanOp::In && c.values.len() == 1);
        keys.push(match json_text(&c.values[0]) {
            Some(text) if single => Key::Text { path, text },
            _ => Key::Typed { path, condition: c },
        });
    }
    keys.sort_by_key(|k| (!k.point(), k.columns()));
    Some(keys)
}

/// The expressions of the index a push-down walks, and whether it is covering. Points lead
/// (one range each), then the group keys and the device id, so that each group's rows come
/// in device id order; the other conditions follow (SQLite tests them on the index's
/// entries), then the aggregates' arguments. Counting without groups needs no order: the
/// other conditions come before the device id there, so that the first is a range of the
/// index.
fn pushdown_index(
    conditions: &[Key<'_>],
    keys: &[Column],
    args: &[&Column],
    counts_only: bool,
) -> Vec<String> {
    let (points, spread): (Vec<&Key>, Vec<&Key>) = conditions.iter().partition(|k| k.point());
    let mut columns: Vec<String> = points.iter().flat_map(|k| k.columns()).collect();
    let spread: Vec<String> = spread.iter().flat_map(|k| k.columns()).collect();
    if counts_only && keys.is_empty() {
        columns.extend(spread);
        columns.push("device_id".into());
        return columns;
    }
    columns.extend(keys.iter().map(Column::indexed));
    columns.push("device_id".into());
    columns.extend(spread);
    if !counts_only {
        columns.extend(
            args.iter()
                .filter(|a| !matches!(a, Column::Id))
                .map(|a| a.indexed()),
        );
    }
    columns
}

/// The SQL that answers an aggregate, with its parameters.
struct Statement {
    keys: Vec<Column>,
    args: Vec<Option<Column>>,
    counts_only: bool,
    sql: String,
    params: Vec<Sql>,
}

/// The groups of `request` (see `TwinStore::aggregate_twins`), or `None` when a field or a
/// condition cannot be written as SQL exactly.
pub(crate) fn aggregate(
    conn: &Connection,
    request: &TwinAggregate,
) -> Result<Option<Vec<TwinGroup>>> {
    let Some(statement) = statement(conn, request)? else {
        return Ok(None);
    };
    let mut groups = if statement.counts_only {
        counted(conn, request, statement)?
    } else {
        accumulated(conn, request, statement)?
    };
    // Devices without a twin row have every twin property missing: they pass no condition
    // on one, and fall in the groups of missing keys.
    let on_twin = |f: &TwinField| !matches!(f, TwinField::DeviceId);
    if !request.conditions.iter().any(|c| on_twin(&c.field)) {
        add_twinless(conn, request, &mut groups)?;
    }
    groups.sort_by(|a, b| a.first.cmp(&b.first));
    Ok(Some(groups))
}

/// The statement answering `request` (building its index the first time), or `None` when
/// a field or a condition cannot be written as SQL exactly.
fn statement(conn: &Connection, request: &TwinAggregate) -> Result<Option<Statement>> {
    let Some(keys) = request
        .group_by
        .iter()
        .map(Column::of)
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let counts_only = request.counts_only();
    let Some(args) = request
        .aggregates
        .iter()
        .map(|(_, field)| match field {
            None => Some(None),
            Some(_) if counts_only => Some(None),
            Some(f) => Column::of(f).map(Some),
        })
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let (distinct, _) = distinct_args(&args);
    // The conditions, keys and arguments are the columns of one index that alone answers,
    // when it exists or can be built (within the caps); otherwise each condition selects
    // twins through its own property's index, and SQLite reads them.
    let mut params = Vec::new();
    let mut terms = Vec::new();
    let mut indexed_by = None;
    if let Some(conditions) = condition_keys(&request.conditions) {
        let index = pushdown_index(&conditions, &keys, &distinct, counts_only);
        let any_json = !conditions.is_empty()
            || keys
                .iter()
                .chain(distinct.iter().copied())
                .any(|c| matches!(c, Column::Json(_)));
        let expr = index.join(", ");
        if any_json && index.len() <= MAX_COVERING_COLUMNS && ensure_index(conn, &expr)? {
            for key in &conditions {
                match key.term(&mut params) {
                    Some(term) => terms.push(term),
                    None => return Ok(None),
                }
            }
            indexed_by = Some(index_name(&expr));
        } else if !any_json {
            indexed_by = Some(String::new());
        }
    }
    for c in &request.conditions {
        if indexed_by.is_some() && matches!(c.field, TwinField::DeviceId) {
            match exact_condition(conn, c, &mut params)? {
                Some(term) => terms.push(term),
                None => return Ok(None),
            }
        }
    }
    if indexed_by.is_none() {
        for c in &request.conditions {
            match exact_condition(conn, c, &mut params)? {
                Some(term) => terms.push(term),
                None => return Ok(None),
            }
        }
    }
    let from = match indexed_by.as_deref() {
        Some(name) if !name.is_empty() => format!("twins t INDEXED BY {name}"),
        _ => "twins t".to_owned(),
    };
    let where_clause = if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    };
    let sql = if counts_only {
        counted_sql(&keys, &from, &where_clause)
    } else {
        accumulated_sql(&keys, &distinct, &from, &where_clause)
    };
    Ok(Some(Statement {
        keys,
        args,
        counts_only,
        sql,
        params,
    }))
}

/// `GROUP BY` and `COUNT(*)` in SQL, over the index of [`pushdown_index`].
fn counted(
    conn: &Connection,
    request: &TwinAggregate,
    statement: Statement,
) -> Result<Vec<TwinGroup>> {
    let keys = &statement.keys;
    let n = keys.len();
    let mut stmt = conn.prepare_cached(&statement.sql)?;
    let rows = stmt
        .query_map(params_from_iter(statement.params), |r| {
            let mut texts = Vec::with_capacity(n);
            for i in 0..n {
                texts.push(r.get::<_, Option<String>>(i)?);
            }
            Ok((
                texts,
                r.get::<_, u64>(n)?,
                r.get::<_, Option<String>>(n + 1)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut groups = Vec::new();
    for (texts, count, first) in rows {
        // Without GROUP BY, SQLite answers one row even over no twins.
        let Some(first) = first else { continue };
        let keys = keys
            .iter()
            .zip(texts)
            .map(|(k, t)| k.value(t))
            .collect::<Result<Vec<_>>>()?;
        let values = request
            .aggregates
            .iter()
            .map(|_| Some(Value::from(count)))
            .collect();
        groups.push(TwinGroup {
            keys,
            values,
            first,
        });
    }
    Ok(groups)
}

/// The SQL of [`counted`], reading `from` (`twins t`, maybe with its index).
fn counted_sql(keys: &[Column], from: &str, where_clause: &str) -> String {
    let mut select: Vec<String> = keys.iter().map(Column::text).collect();
    let group_by = if keys.is_empty() {
        String::new()
    } else {
        let columns: Vec<String> = (1..=keys.len()).map(|i| i.to_string()).collect();
        format!("GROUP BY {}", columns.join(", "))
    };
    select.push("COUNT(*)".into());
    select.push("MIN(t.device_id)".into());
    format!(
        "SELECT {} FROM {from} {where_clause} {group_by}",
        select.join(", ")
    )
}

/// A group being accumulated in Rust.
struct Running {
    keys: Vec<Option<Value>>,
    accumulators: Vec<Accumulator>,
    first: String,
}

/// At most this many expressions in one index of [`pushdown_index`]; a wider query reads
/// the twins instead.
const MAX_COVERING_COLUMNS: usize = 8;

/// The distinct arguments of the aggregates (in first-use order), and for each aggregate the
/// position of its argument among them.
fn distinct_args(args: &[Option<Column>]) -> (Vec<&Column>, Vec<Option<usize>>) {
    let mut distinct: Vec<&Column> = Vec::new();
    let at = args
        .iter()
        .map(|arg| {
            let col = arg.as_ref()?;
            let i = distinct
                .iter()
                .position(|d| d.text() == col.text())
                .unwrap_or_else(|| {
                    distinct.push(col);
                    distinct.len() - 1
                });
            Some(i)
        })
        .collect();
    (distinct, at)
}

/// The SQL of [`accumulated`]: keys, device id and distinct arguments, in the order of
/// [`pushdown_index`], reading `from`.
fn accumulated_sql(keys: &[Column], args: &[&Column], from: &str, where_clause: &str) -> String {
    let mut select: Vec<String> = keys.iter().map(Column::text).collect();
    select.push("t.device_id".into());
    select.extend(args.iter().map(|a| a.text()));
    let order: Vec<String> = (1..=keys.len() + 1).map(|i| i.to_string()).collect();
    format!(
        "SELECT {} FROM {from} {where_clause} ORDER BY {}",
        select.join(", "),
        order.join(", ")
    )
}

/// Reads the matching twins by group, each group's in device id order, and accumulates the
/// groups. Over the index of [`pushdown_index`] every value read is in the index, so SQLite
/// walks it alone; without it, SQLite reads the twins the conditions' indexes select.
fn accumulated(
    conn: &Connection,
    request: &TwinAggregate,
    statement: Statement,
) -> Result<Vec<TwinGroup>> {
    let keys = &statement.keys;
    let (distinct, at) = distinct_args(&statement.args);
    let mut stmt = conn.prepare_cached(&statement.sql)?;
    let mut rows = stmt.query(params_from_iter(statement.params))?;
    let mut running: Vec<Running> = Vec::new();
    let mut index: HashMap<Vec<Option<String>>, usize> = HashMap::new();
    let mut values: Vec<Option<Value>> = Vec::with_capacity(distinct.len());
    while let Some(r) = rows.next()? {
        let mut texts = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            texts.push(r.get::<_, Option<String>>(i)?);
        }
        let group = match index.get(&texts) {
            Some(group) => *group,
            None => {
                let key_values = keys
                    .iter()
                    .zip(texts.iter().cloned())
                    .map(|(k, t)| k.value(t))
                    .collect::<Result<Vec<_>>>()?;
                running.push(Running {
                    keys: key_values,
                    accumulators: request
                        .aggregates
                        .iter()
                        .map(|(f, _)| Accumulator::new(*f))
                        .collect(),
                    // Rows of a group come in device id order: its first is its least.
                    first: r.get(keys.len())?,
                });
                index.insert(texts, running.len() - 1);
                running.len() - 1
            }
        };
        values.clear();
        for (i, col) in distinct.iter().enumerate() {
            values.push(col.value(r.get(keys.len() + 1 + i)?)?);
        }
        for (acc, arg) in running[group].accumulators.iter_mut().zip(&at) {
            acc.push(arg.and_then(|i| values[i].as_ref()));
        }
    }
    Ok(running
        .into_iter()
        .map(|g| TwinGroup {
            keys: g.keys,
            values: Accumulator::finish_all(g.accumulators),
            first: g.first,
        })
        .collect())
}

/// Adds the devices that have no twin row (whose device id passes the conditions) to the
/// groups: every twin property of theirs is missing.
fn add_twinless(
    conn: &Connection,
    request: &TwinAggregate,
    groups: &mut Vec<TwinGroup>,
) -> Result<()> {
    let (devices, twins): (i64, i64) = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM devices), (SELECT COUNT(*) FROM twins)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if devices == twins {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT d.device_id FROM devices d
         WHERE NOT EXISTS (SELECT 1 FROM twins t WHERE t.device_id = d.device_id)
         ORDER BY d.device_id",
    )?;
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    for id in ids {
        if !request.conditions.iter().all(|c| device_id_passes(&id, c)) {
            continue;
        }
        let keys: Vec<Option<Value>> = request
            .group_by
            .iter()
            .map(|f| matches!(f, TwinField::DeviceId).then(|| Value::String(id.clone())))
            .collect();
        let fresh = || {
            request
                .aggregates
                .iter()
                .map(|(f, _)| Accumulator::new(*f))
                .collect::<Vec<_>>()
        };
        let mut accumulators = fresh();
        for acc in &mut accumulators {
            acc.push(None);
        }
        let values = Accumulator::finish_all(accumulators);
        match groups.iter_mut().find(|g| g.keys == keys) {
            Some(g) => {
                for ((f, _), v) in request.aggregates.iter().zip(&mut g.values) {
                    if *f == AggregateOp::Count {
                        let n = v.as_ref().and_then(Value::as_u64).unwrap_or(0);
                        *v = Some(Value::from(n + 1));
                    }
                }
                if id < g.first {
                    g.first = id;
                }
            }
            None => groups.push(TwinGroup {
                keys,
                values,
                first: id,
            }),
        }
    }
    Ok(())
}

/// Whether a device id satisfies a condition on the device id.
pub(crate) fn device_id_passes(id: &str, c: &ScanCondition) -> bool {
    let TwinField::DeviceId = c.field else {
        return false;
    };
    c.values.iter().any(|v| {
        let Some(v) = v.as_str() else { return false };
        match c.op {
            ScanOp::Eq | ScanOp::In => id == v,
            ScanOp::Lt => id < v,
            ScanOp::Le => id <= v,
            ScanOp::Gt => id > v,
            ScanOp::Ge => id >= v,
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query_plan(conn: &Connection, sql: &str, params: Vec<Sql>) -> Vec<String> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params_from_iter(params), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// The plan SQLite follows for `request`'s statement.
    fn plan_of(conn: &Connection, request: &TwinAggregate) -> Vec<String> {
        let statement = statement(conn, request).unwrap().unwrap();
        query_plan(conn, &statement.sql, statement.params)
    }

    /// A scratch database holding these devices, each with this twin document.
    fn fleet(twins: &[(&str, &str)]) -> Connection {
        let conn = crate::sqlite_query::tests::scratch();
        for (id, doc) in twins {
            conn.execute("INSERT INTO devices VALUES (?1, '{}')", [id])
                .unwrap();
            conn.execute("INSERT INTO twins VALUES (?1, ?2)", [id, doc])
                .unwrap();
        }
        conn
    }

    /// Each group as "first [keys] [values]".
    fn texts(groups: &[TwinGroup]) -> Vec<String> {
        groups
            .iter()
            .map(|g| format!("{} {:?} {:?}", g.first, g.keys, g.values))
            .collect()
    }

    fn condition(field: TwinField, op: ScanOp, values: Vec<Value>) -> ScanCondition {
        ScanCondition { field, op, values }
    }

    /// A `GROUP BY` over the fleet with `COUNT()` walks the index of the grouped property,
    /// without sorting and without reading each twin.
    #[test]
    fn counting_groups_reads_only_the_index() {
        let conn = fleet(&[
            ("a", r#"{"tags":{"floor":1}}"#),
            ("b", r#"{"tags":{"floor":1.0}}"#),
            ("c", r#"{"tags":{"floor":1}}"#),
        ]);
        let request = TwinAggregate {
            group_by: vec![TwinField::Tags(vec!["floor".into()])],
            aggregates: vec![(AggregateOp::Count, None)],
            conditions: Vec::new(),
        };
        let groups = aggregate(&conn, &request).unwrap().unwrap();
        assert_eq!(
            texts(&groups),
            [
                "a [Some(Number(1))] [Some(Number(2))]",
                "b [Some(Number(1.0))] [Some(Number(1))]"
            ]
        );
        let plan = plan_of(&conn, &request);
        // SQLite walks the index in key order (no sort), counting from the index's entries;
        // it reads a twin only for each group's first row (the key's JSON text).
        assert!(
            plan.len() == 1
                && plan[0].starts_with("SCAN t USING")
                && plan[0].contains("INDEX twins_by_"),
            "{plan:?}"
        );
    }

    /// A `GROUP BY` over the fleet with `SUM`, `AVG`, `MIN`, `MAX` walks one covering index
    /// of (key, device id, arguments) in order: no sort, no twin read; the aggregates see
    /// each group's values in device id order, as the language's evaluation does.
    #[test]
    fn other_aggregates_read_only_a_covering_index() {
        let conn = fleet(&[
            ("d", r#"{"tags":{"floor":1},"reported":{"t":1.0}}"#),
            ("a", r#"{"tags":{"floor":1},"reported":{"t":1}}"#),
            ("b", r#"{"tags":{"floor":2},"reported":{"t":"x"}}"#),
            ("c", r#"{"tags":{"floor":1},"reported":{"t":2.5}}"#),
        ]);
        let floor = TwinField::Tags(vec!["floor".into()]);
        let t = TwinField::Reported(vec!["t".into()]);
        let request = TwinAggregate {
            group_by: vec![floor.clone()],
            aggregates: vec![
                (AggregateOp::Avg, Some(t.clone())),
                (AggregateOp::Min, Some(t.clone())),
                (AggregateOp::Max, Some(TwinField::DeviceId)),
                (AggregateOp::Sum, Some(t.clone())),
                (AggregateOp::Count, None),
            ],
            conditions: Vec::new(),
        };
        let groups = aggregate(&conn, &request).unwrap().unwrap();
        // `MIN` keeps the first of `1` (device a) and `1.0` (device d); `SUM` and `AVG` skip
        // the string, which `MIN` and `MAX` take among strings.
        assert_eq!(
            texts(&groups),
            [
                "a [Some(Number(1))] [Some(Number(1.5)), Some(Number(1)), Some(String(\"d\")), \
                 Some(Number(4.5)), Some(Number(3))]",
                "b [Some(Number(2))] [None, Some(String(\"x\")), Some(String(\"b\")), None, \
                 Some(Number(1))]",
            ]
        );
        let plan = plan_of(&conn, &request);
        assert!(
            plan.len() == 1 && plan[0].starts_with("SCAN t USING COVERING INDEX twins_by_"),
            "{plan:?}"
        );
    }

    /// An aggregate whose `WHERE` is equalities on twin properties (typed: `'1'`, not `1`)
    /// reads one index led by the conditions' JSON text, with or without `GROUP BY`: no
    /// twin read, no sort.
    #[test]
    fn equalities_lead_an_index_that_alone_answers() {
        let conn = fleet(&[
            ("a", r#"{"tags":{"floor":1},"reported":{"p":"1","t":2}}"#),
            ("b", r#"{"tags":{"floor":1},"reported":{"p":1,"t":5}}"#),
            ("c", r#"{"tags":{"floor":2},"reported":{"p":"1","t":4}}"#),
            ("d", r#"{"tags":{"floor":1},"reported":{"p":"1","t":1.5}}"#),
        ]);
        let floor = TwinField::Tags(vec!["floor".into()]);
        let t = TwinField::Reported(vec!["t".into()]);
        let p = TwinField::Reported(vec!["p".into()]);
        let is_text_one = condition(p.clone(), ScanOp::Eq, vec![json!("1")]);
        for (group_by, aggregates) in [
            (vec![], vec![(AggregateOp::Count, None)]),
            (vec![floor.clone()], vec![(AggregateOp::Count, None)]),
            (
                vec![floor.clone()],
                vec![(AggregateOp::Sum, Some(t.clone()))],
            ),
        ] {
            let request = TwinAggregate {
                group_by,
                aggregates,
                conditions: vec![is_text_one.clone()],
            };
            let groups = aggregate(&conn, &request).unwrap().unwrap();
            // Device b's `p` is the number 1: it does not match the string '1'.
            let expected = match (request.group_by.len(), request.aggregates[0].0) {
                (0, _) => vec!["a [] [Some(Number(3))]"],
                (_, AggregateOp::Count) => vec![
                    "a [Some(Number(1))] [Some(Number(2))]",
                    "c [Some(Number(2))] [Some(Number(1))]",
                ],
                _ => vec![
                    "a [Some(Number(1))] [Some(Number(3.5))]",
                    "c [Some(Number(2))] [Some(Number(4))]",
                ],
            };
            assert_eq!(texts(&groups), expected);
            let plan = plan_of(&conn, &request);
            // Counting by group reads, as without a condition, each group's first key text
            // from its twin (SQLite does not call that index covering); the rest are covered.
            let search = if request.group_by.is_empty() || request.aggregates[0].1.is_some() {
                "SEARCH t USING COVERING INDEX twins_by_"
            } else {
                "SEARCH t USING INDEX twins_by_"
            };
            assert!(
                plan.len() == 1 && plan[0].starts_with(search) && plan[0].contains("(<expr>=?)"),
                "{plan:?}"
            );
        }
    }

    /// Numbers (`1` equals `1.0`, not `'1'`), ranges and `IN` of several values of mixed
    /// types are answered from one index holding each property's type rank and value: with
    /// an equality on a number or without groups, SQLite searches it; a range or an `IN`
    /// under `GROUP BY` or another aggregate is tested on the entries of a walk in (keys,
    /// device id) order. Never a twin read for a condition, never a sort.
    #[test]
    fn numbers_ranges_and_lists_read_one_index() {
        let conn = fleet(&[
            ("a", r#"{"tags":{"floor":1},"reported":{"p":1,"t":2}}"#),
            ("b", r#"{"tags":{"floor":1},"reported":{"p":1.0,"t":5}}"#),
            ("c", r#"{"tags":{"floor":2},"reported":{"p":"1","t":4}}"#),
            ("d", r#"{"tags":{"floor":1},"reported":{"p":true,"t":"9"}}"#),
            ("e", r#"{"tags":{"floor":2},"reported":{"p":2,"t":1.5}}"#),
            ("f", r#"{"tags":{"floor":"1"},"reported":{"p":null,"t":7}}"#),
            ("g", r#"{"tags":{},"reported":{"t":3}}"#),
        ]);
        let floor = TwinField::Tags(vec!["floor".into()]);
        let t = TwinField::Reported(vec!["t".into()]);
        let p = TwinField::Reported(vec!["p".into()]);
        let count = vec![(AggregateOp::Count, None)];
        let cases = [
            // (group by, aggregates, conditions, answer, plan's start)
            (
                vec![],
                count.clone(),
                vec![condition(p.clone(), ScanOp::Eq, vec![json!(1.0)])],
                vec!["a [] [Some(Number(2))]"],
                "SEARCH t USING COVERING INDEX twins_by_",
            ),
            (
                vec![],
                count.clone(),
                vec![condition(t.clone(), ScanOp::Gt, vec![json!(3)])],
                vec!["b [] [Some(Number(3))]"],
                "SEARCH t USING COVERING INDEX twins_by_",
            ),
            (
                vec![floor.clone()],
                count.clone(),
                vec![condition(t.clone(), ScanOp::Le, vec![json!(4)])],
                vec![
                    "a [Some(Number(1))] [Some(Number(1))]",
                    "c [Some(Number(2))] [Some(Number(2))]",
                    "g [None] [Some(Number(1))]",
                ],
                "SCAN t USING INDEX twins_by_",
            ),
            (
                vec![floor.clone()],
                vec![
                    (AggregateOp::Avg, Some(t.clone())),
                    (AggregateOp::Min, Some(p.clone())),
                ],
                vec![condition(
                    p.clone(),
                    ScanOp::In,
                    vec![json!(1), json!("1"), json!(true)],
                )],
                vec![
                    "a [Some(Number(1))] [Some(Number(3.5)), Some(Number(1))]",
                    "c [Some(Number(2))] [Some(Number(4)), Some(String(\"1\"))]",
                ],
                "SCAN t USING COVERING INDEX twins_by_",
            ),
            (
                vec![p.clone()],
                vec![(AggregateOp::Max, Some(t.clone()))],
                vec![
                    condition(floor.clone(), ScanOp::Eq, vec![json!(1)]),
                    condition(t.clone(), ScanOp::Lt, vec![json!(6)]),
                ],
                // Group keys are JSON texts: `1` and `1.0` stay apart, as in the language.
                vec![
                    "a [Some(Number(1))] [Some(Number(2))]",
                    "b [Some(Number(1.0))] [Some(Number(5))]",
                ],
                "SEARCH t USING COVERING INDEX twins_by_",
            ),
        ];
        for (group_by, aggregates, conditions, answer, start) in cases {
            let request = TwinAggregate {
                group_by,
                aggregates,
                conditions,
            };
            let groups = aggregate(&conn, &request).unwrap().unwrap();
            assert_eq!(texts(&groups), answer, "{request:?}");
            let plan = plan_of(&conn, &request);
            assert!(
                plan.len() == 1 && plan[0].starts_with(start),
                "{request:?}: {plan:?}"
            );
        }
        // A range on booleans is the hub's (the language does not order them).
        let request = TwinAggregate {
            group_by: Vec::new(),
            aggregates: count,
            conditions: vec![condition(p, ScanOp::Gt, vec![json!(false)])],
        };
        assert!(aggregate(&conn, &request).unwrap().is_none());
    }

    /// Once the cap of twin indexes is reached, an equality `WHERE` keeps its typed
    /// conditions (and any property index built before) and still answers exactly.
    #[test]
    fn conditions_past_the_index_cap_answer_exactly() {
        let conn = fleet(&[
            ("a", r#"{"reported":{"p":"1","t":1}}"#),
            ("b", r#"{"reported":{"p":1,"t":1.0}}"#),
            ("c", r#"{"reported":{"p":"1","t":"1"}}"#),
        ]);
        for i in 0..32 {
            conn.execute_batch(&format!(
                "CREATE INDEX twins_by_cap{i} ON twins (device_id)"
            ))
            .unwrap();
        }
        for (field, values, answer) in [
            ("p", vec![json!("1")], 2),
            ("t", vec![json!(1)], 2),
            ("t", vec![json!(1), json!("1")], 3),
        ] {
            let request = TwinAggregate {
                group_by: Vec::new(),
                aggregates: vec![(AggregateOp::Count, None)],
                conditions: vec![condition(
                    TwinField::Reported(vec![field.into()]),
                    ScanOp::In,
                    values,
                )],
            };
            let groups = aggregate(&conn, &request).unwrap().unwrap();
            assert_eq!(groups.len(), 1);
            assert_eq!(groups[0].values, [Some(Value::from(answer))]);
        }
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'twins_by_%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 32);
    }
}
