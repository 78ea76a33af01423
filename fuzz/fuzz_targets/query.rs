//! The query language (`ironhub_query`): any text parses as a query and as a routing or twin
//! condition, or is refused, never a panic; a parsed query runs over a small fixed fleet of
//! twins (filter, projection, aggregation); and every document it matches satisfies each of
//! the query's hints (the comparisons a store may use to read fewer documents), each
//! evaluated as a condition of the language.
#![no_main]

use std::sync::LazyLock;

use ironhub_query::{BinOp, Condition, Dialect, Expr, Hint, HintOp, Query, Segment};
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

/// The hint as a condition of the language: `path op value` (or `path IN [values]`).
fn as_condition(hint: &Hint) -> Condition {
    let path = Box::new(Expr::Path(
        hint.path.iter().cloned().map(Segment::Key).collect(),
    ));
    let mut values = hint.values.iter().cloned().map(Expr::Literal);
    let op = match hint.op {
        HintOp::In => {
            return Condition(Expr::In {
                expr: path,
                list: values.collect(),
                negated: false,
            });
        }
        HintOp::Eq => BinOp::Eq,
        HintOp::Lt => BinOp::Lt,
        HintOp::Le => BinOp::Le,
        HintOp::Gt => BinOp::Gt,
        HintOp::Ge => BinOp::Ge,
    };
    let value = values.next().expect("a comparison hint has one value");
    assert!(values.next().is_none(), "a comparison hint has one value");
    Condition(Expr::Binary(op, path, Box::new(value)))
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
                as_condition(hint).matches(doc),
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
