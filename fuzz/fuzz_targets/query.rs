//! The query language (`ironhub_query`): any text parses as a query and as a routing or twin
//! condition, or is refused, never a panic; a parsed query runs over a small fixed fleet of
//! twins (filter, projection, aggregation); and every document it matches satisfies each of
//! the query's hints, the comparisons a store may use to read fewer documents.
#![no_main]

use std::cmp::Ordering;
use std::sync::LazyLock;

use ironhub_query::{Condition, Dialect, Hint, HintOp, Query, Segment, lookup};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

static FLEET: LazyLock<Vec<Value>> = LazyLock::new(|| {
    vec![
        json!({"deviceId": "d1", "status": "enabled", "version": 3,
               "tags": {"site": "lab", "floor": 1, "ids": [1, "a", null]},
               "properties": {"reported": {"powerState": "0", "temp": 20.5, "$version": 2},
                              "desired": {"fw": "1.2", "$version": 4}}}),
        json!({"deviceId": "d2", "status": "enabled", "version": 4,
               "tags": {"site": "lab", "floor": 2},
               "properties": {"reported": {"powerState": "1", "temp": 25, "$version": 5}}}),
        json!({"deviceId": "d3", "moduleId": "m1", "status": "disabled", "version": 1,
               "tags": {"site": "roof", "floor": null},
               "properties": {"reported": {"powerState": 0, "big": 18446744073709551615u64,
                                           "neg": -9223372036854775808i64, "$version": 1}}}),
        json!({"deviceId": "D4", "status": "enabled", "version": 2, "tags": {},
               "properties": {"reported": {"powerState": "0", "temp": 30.0, "ok": true}}}),
        json!({"deviceId": "", "jobId": "j1", "status": "completed"}),
    ]
});

/// Typed comparison, as the language compares: numbers with numbers, strings with strings.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return Some(x.cmp(&y));
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return Some(x.cmp(&y));
            }
            x.as_f64()?.partial_cmp(&y.as_f64()?)
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn holds(hint: &Hint, doc: &Value) -> bool {
    let path: Vec<Segment> = hint.path.iter().cloned().map(Segment::Key).collect();
    let Some(value) = lookup(doc, &path) else {
        return false;
    };
    let is = |want: &[Ordering]| {
        hint.values
            .iter()
            .any(|v| compare(value, v).is_some_and(|o| want.contains(&o)))
    };
    match hint.op {
        HintOp::Eq | HintOp::In => is(&[Ordering::Equal]),
        HintOp::Lt => is(&[Ordering::Less]),
        HintOp::Le => is(&[Ordering::Less, Ordering::Equal]),
        HintOp::Gt => is(&[Ordering::Greater]),
        HintOp::Ge => is(&[Ordering::Greater, Ordering::Equal]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for dialect in [Dialect::Routing, Dialect::Twin] {
        if let Ok(condition) = Condition::parse(text, dialect) {
            for doc in FLEET.iter() {
                let _ = condition.matches(doc);
            }
        }
    }
    let Ok(query) = Query::parse(text) else {
        return;
    };
    assert_eq!(
        Query::parse(text).ok().as_ref(),
        Some(&query),
        "parsing is deterministic"
    );
    let hints = query.hints();
    let _ = (query.item_type(), query.aggregates());
    let matched: Vec<Value> = FLEET.iter().filter(|d| query.matches(d)).cloned().collect();
    for doc in &matched {
        for hint in &hints {
            assert!(
                holds(hint, doc),
                "{doc} matches {text:?} but not its hint {hint:?}"
            );
        }
    }
    if query.is_streamed() {
        for doc in matched {
            let _ = query.project(doc);
        }
    } else {
        let mut collector = query.collector();
        for doc in matched {
            collector.push(doc);
        }
        let _ = collector.finish();
    }
});
