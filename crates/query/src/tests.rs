//! The language against a fixed fleet: each query and the answer IoT Hub gives.

use serde_json::{Value, json};

use crate::{Condition, Dialect, HintOp, ItemType, Query};

fn fleet() -> Vec<Value> {
    vec![
        json!({"deviceId": "d1", "status": "enabled", "version": 3,
               "tags": {"site": "lab", "floor": 1},
               "properties": {"reported": {"powerState": "0", "temp": 20.5, "$version": 2}}}),
        json!({"deviceId": "d2", "status": "enabled", "version": 4,
               "tags": {"site": "lab", "floor": 2},
               "properties": {"reported": {"powerState": "1", "temp": 25, "$version": 5}}}),
        json!({"deviceId": "d3", "status": "disabled", "version": 1,
               "tags": {"site": "roof", "floor": null},
               "properties": {"reported": {"powerState": 0, "$version": 1}}}),
        json!({"deviceId": "d4", "status": "enabled", "version": 2,
               "tags": {},
               "properties": {"reported": {"powerState": "0", "temp": 30, "$version": 3}}}),
    ]
}

/// Runs `text` over the fleet as the hub does.
fn run(text: &str) -> Vec<Value> {
    let query = Query::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let docs = fleet().into_iter().filter(|d| query.matches(d));
    if query.is_streamed() {
        let mut out: Vec<Value> = docs.map(|d| query.project(d)).collect();
        if let Some(top) = query.top {
            out.truncate(top as usize);
        }
        return out;
    }
    let mut c = query.collector();
    for d in docs {
        c.push(d);
    }
    c.finish()
}

fn ids(text: &str) -> Vec<String> {
    run(text)
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn where_clauses_answer_the_devices_iot_hub_does() {
    let cases: &[(&str, &[&str])] = &[
        ("SELECT * FROM devices", &["d1", "d2", "d3", "d4"]),
        // No coercion: the string '0' is not the number 0.
        (
            "SELECT * FROM devices WHERE properties.reported.powerState = '0'",
            &["d1", "d4"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.powerState = 0",
            &["d3"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.powerState != '0'",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.temp > 20",
            &["d1", "d2", "d4"],
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.temp >= 25 AND tags.site = 'lab'",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE tags.site = 'roof' OR properties.reported.temp < 21",
            &["d1", "d3"],
        ),
        (
            "SELECT * FROM devices WHERE NOT (tags.site = 'lab')",
            &["d3"],
        ),
        (
            "SELECT * FROM devices WHERE deviceId IN ['d1', 'd3', 'zz']",
            &["d1", "d3"],
        ),
        (
            "SELECT * FROM devices WHERE deviceId NIN ['d1', 'd3']",
            &["d2", "d4"],
        ),
        (
            "SELECT * FROM devices WHERE deviceId NOT IN ['d1']",
            &["d2", "d3", "d4"],
        ),
        // Undefined is not null.
        ("SELECT * FROM devices WHERE tags.floor = null", &["d3"]),
        (
            "SELECT * FROM devices WHERE IS_DEFINED(tags.floor)",
            &["d1", "d2", "d3"],
        ),
        (
            "SELECT * FROM devices WHERE NOT IS_DEFINED(tags.floor)",
            &["d4"],
        ),
        ("SELECT * FROM devices WHERE IS_NULL(tags.floor)", &["d3"]),
        (
            "SELECT * FROM devices WHERE IS_NUMBER(properties.reported.powerState)",
            &["d3"],
        ),
        (
            "SELECT * FROM devices WHERE IS_STRING(properties.reported.powerState)",
            &["d1", "d2", "d4"],
        ),
        (
            "SELECT * FROM devices WHERE IS_OBJECT(tags) AND IS_PRIMITIVE(deviceId)",
            &["d1", "d2", "d3", "d4"],
        ),
        (
            "SELECT * FROM devices WHERE IS_BOOL(true) AND NOT IS_ARRAY(tags)",
            &["d1", "d2", "d3", "d4"],
        ),
        // Arithmetic on numbers only.
        (
            "SELECT * FROM devices WHERE properties.reported.temp * 2 - 10 = 40",
            &["d2"],
        ),
        ("SELECT * FROM devices WHERE tags.floor + 1 = 3", &["d2"]),
        ("SELECT * FROM devices WHERE tags.floor % 2 = 1", &["d1"]),
        // String functions.
        (
            "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'd') AND ENDSWITH(deviceId, '2')",
            &["d2"],
        ),
        (
            "SELECT * FROM devices WHERE CONTAINS(tags.site, 'oo')",
            &["d3"],
        ),
        (
            "SELECT * FROM devices WHERE UPPER(tags.site) = 'LAB' AND LOWER('X') = 'x'",
            &["d1", "d2"],
        ),
        ("SELECT * FROM devices WHERE LENGTH(tags.site) = 4", &["d3"]),
        (
            "SELECT * FROM devices WHERE SUBSTRING(tags.site, 1, 2) = 'oo'",
            &["d3"],
        ),
        (
            "SELECT * FROM devices WHERE CONCAT(deviceId, '-', tags.site) = 'd1-lab'",
            &["d1"],
        ),
        (
            "SELECT * FROM devices WHERE INDEX_OF(tags.site, 'b') = 2",
            &["d1", "d2"],
        ),
        (
            "SELECT * FROM devices WHERE TRIM('  a ') = 'a' AND deviceId = 'd4'",
            &["d4"],
        ),
        (
            "SELECT * FROM devices WHERE ABS(-2) = 2 AND FLOOR(properties.reported.temp) = 20",
            &["d1"],
        ),
        // System fields: case-insensitive names, `$version`.
        ("SELECT * FROM devices WHERE Status = 'disabled'", &["d3"]),
        (
            "SELECT * FROM devices WHERE properties.reported.$version >= 3",
            &["d2", "d4"],
        ),
        ("select * from devices where DEVICEID = 'd2'", &["d2"]),
        ("SELECT * FROM devices WHERE tags['site'] = 'roof'", &["d3"]),
        ("SELECT TOP 2 * FROM devices", &["d1", "d2"]),
        (
            "SELECT * FROM devices ORDER BY properties.reported.temp DESC",
            &["d4", "d2", "d1", "d3"],
        ),
        ("SELECT TOP 1 * FROM devices ORDER BY version", &["d3"]),
    ];
    for (text, expected) in cases {
        assert_eq!(ids(text), *expected, "{text}");
    }
}

#[test]
fn projections_groups_and_aggregates() {
    assert_eq!(
        run(
            "SELECT deviceId, properties.reported.temp, tags.floor AS f FROM devices WHERE tags.site = 'lab'"
        ),
        vec![
            json!({"deviceId": "d1", "temp": 20.5, "f": 1}),
            json!({"deviceId": "d2", "temp": 25, "f": 2}),
        ]
    );
    // An undefined projection is left out; null is kept.
    assert_eq!(
        run("SELECT deviceId, tags.floor FROM devices WHERE deviceId IN ['d3', 'd4']"),
        vec![
            json!({"deviceId": "d3", "floor": null}),
            json!({"deviceId": "d4"})
        ]
    );
    assert_eq!(
        run("SELECT COUNT() AS numberOfDevices FROM devices"),
        vec![json!({"numberOfDevices": 4})]
    );
    assert_eq!(
        run("SELECT COUNT() AS n FROM devices WHERE deviceId = 'nobody'"),
        vec![json!({"n": 0})]
    );
    assert_eq!(
        run(
            "SELECT properties.reported.powerState AS state, COUNT() AS n FROM devices GROUP BY properties.reported.powerState"
        ),
        vec![
            json!({"state": "0", "n": 2}),
            json!({"state": "1", "n": 1}),
            json!({"state": 0, "n": 1}),
        ]
    );
    assert_eq!(
        run(
            "SELECT tags.site, SUM(properties.reported.temp) AS s, AVG(properties.reported.temp) AS a, MIN(properties.reported.temp) AS lo, MAX(properties.reported.temp) AS hi, COUNT() FROM devices GROUP BY tags.site ORDER BY tags.site"
        ),
        vec![
            // The group whose site is undefined comes first and has no `site`.
            json!({"s": 30, "a": 30, "lo": 30, "hi": 30, "$6": 1}),
            json!({"site": "lab", "s": 45.5, "a": 22.75, "lo": 20.5, "hi": 25, "$6": 2}),
            json!({"site": "roof", "$6": 1}),
        ]
    );
    let q = Query::parse("SELECT deviceId FROM devices").unwrap();
    assert_eq!(q.item_type(), ItemType::Raw);
    let q = Query::parse("SELECT * FROM devices.jobs").unwrap();
    assert_eq!(q.item_type(), ItemType::DeviceJob);
    let q = Query::parse("SELECT * FROM devices.modules WHERE moduleId = 'm'").unwrap();
    assert_eq!(q.item_type(), ItemType::Twin);
}

#[test]
fn mistakes_are_errors_that_point_at_them() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "SELECT * FROM devices WHERE",
            27,
            "Expected an expression but found end of query",
        ),
        (
            "SELECT * FROM devices WHERE x = ",
            32,
            "Expected an expression",
        ),
        ("SELECT * FRM devices", 9, "Expected FROM but found 'FRM'"),
        ("SELECT * FROM twins", 14, "Unknown collection 'twins'"),
        (
            "SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')",
            28,
            "Unknown function 'STARTS_WITH'",
        ),
        (
            "SELECT * FROM devices WHERE FOO(1)",
            28,
            "Unknown function 'FOO'",
        ),
        (
            "SELECT * FROM devices WHERE LENGTH('a', 'b')",
            28,
            "takes 1 argument(s), not 2",
        ),
        (
            "SELECT * FROM devices WHERE COUNT() > 1",
            28,
            "aggregate function COUNT",
        ),
        (
            "SELECT * FROM devices WHERE a = 'open",
            32,
            "Unterminated string",
        ),
        (
            "SELECT * FROM devices WHERE a = #",
            32,
            "Unexpected character '#'",
        ),
        (
            "SELECT * FROM devices WHERE a IN 'x'",
            33,
            "Expected '[' starting a list",
        ),
        (
            "SELECT * FROM devices GROUP BY tags.site",
            22,
            "SELECT * cannot be used with GROUP BY",
        ),
        (
            "SELECT deviceId, COUNT() FROM devices GROUP BY tags.site",
            38,
            "neither an aggregate nor in GROUP BY",
        ),
        (
            "SELECT deviceId, COUNT() FROM devices",
            37,
            "needs a GROUP BY",
        ),
        (
            "SELECT TOP x * FROM devices",
            11,
            "a whole number after TOP",
        ),
        ("SELECT * FROM devices extra", 22, "Expected end of query"),
        (
            "SELECT a, b AS a FROM devices",
            10,
            "Two SELECT items are named 'a'",
        ),
        ("", 0, "Expected SELECT"),
        (
            "SELECT deviceId FROM devices.jobs",
            0,
            "devices.jobs support only SELECT *",
        ),
        (
            "SELECT COUNT() FROM devices.modules GROUP BY moduleId",
            0,
            "GROUP BY is supported only on devices",
        ),
    ];
    for (text, column, message) in cases {
        let e = Query::parse(text).expect_err(text);
        assert_eq!((e.line, e.column), (1, *column), "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
        assert!(
            e.to_string().starts_with(&format!(
                "SQL query parse failed due to following errors: Line 1:{column} "
            )),
            "{e}"
        );
    }
    let e = Query::parse("SELECT *\nFROM devices\nWHERE ))").unwrap_err();
    assert_eq!((e.line, e.column), (3, 6));
}

#[test]
fn routing_conditions_share_the_expressions() {
    let message = json!({"$contentType": "application/json", "$body": {"temperature": 31},
                         "level": "critical", "$twin": {"tags": {"location": "b1"}}});
    let yes = [
        "$body.temperature > 30",
        "level = 'critical' AND $contentType = 'application/json'",
        "STARTS_WITH($twin.tags.location, 'b')",
        "ENDS_WITH(level, 'cal') OR false",
    ];
    for text in yes {
        assert!(
            Condition::parse(text, Dialect::Routing)
                .unwrap()
                .matches(&message),
            "{text}"
        );
    }
    let no = [
        "$body.temperature > 40",
        "level = 'Critical'",
        "$body.missing = null",
    ];
    for text in no {
        assert!(
            !Condition::parse(text, Dialect::Routing)
                .unwrap()
                .matches(&message),
            "{text}"
        );
    }
    assert!(Condition::parse("STARTSWITH(a, 'b')", Dialect::Routing).is_err());
}

#[test]
fn hints_are_the_comparisons_every_match_satisfies() {
    let q = Query::parse(
        "SELECT * FROM devices WHERE properties.reported.powerState = '0' AND 5 < tags.floor \
         AND deviceId IN ['a', 'b'] AND (tags.x = 1 OR tags.y = 2) AND tags.n = null",
    )
    .unwrap();
    let hints = q.hints();
    assert_eq!(hints.len(), 3, "{hints:?}");
    assert_eq!(hints[0].path, ["properties", "reported", "powerState"]);
    assert_eq!(
        (hints[0].op, &hints[0].values[0]),
        (HintOp::Eq, &json!("0"))
    );
    assert_eq!((hints[1].op, &hints[1].values[0]), (HintOp::Gt, &json!(5)));
    assert_eq!(hints[2].op, HintOp::In);
    assert!(
        Query::parse("SELECT * FROM devices WHERE NOT a = 1")
            .unwrap()
            .hints()
            .is_empty()
    );
}

/// A small generator (xorshift), so the fuzz loop needs no dependency and repeats exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn no_input_makes_it_panic() {
    const PIECES: &[&str] = &[
        "SELECT",
        "*",
        "FROM",
        "devices",
        "WHERE",
        "GROUP",
        "BY",
        "ORDER",
        "TOP",
        "AS",
        "AND",
        "OR",
        "NOT",
        "IN",
        "NIN",
        "(",
        ")",
        "[",
        "]",
        ",",
        ".",
        "=",
        "!=",
        "<",
        ">=",
        "+",
        "-",
        "/",
        "%",
        "'s'",
        "'",
        "1",
        "1.5e3",
        "-0",
        "true",
        "null",
        "tags",
        "x",
        "$version",
        "COUNT()",
        "SUM(",
        "IS_DEFINED(",
        "SUBSTRING(",
        "LENGTH(",
        "devices.jobs",
        "\\",
        "é",
        "9999999999999999999999",
        " ",
        "\n",
        "CONCAT('a',",
        "DESC",
        "\"q\"",
        "['",
        "[0]",
    ];
    let docs = fleet();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..rng.below(24) {
            text.push_str(PIECES[rng.below(PIECES.len())]);
            if rng.below(3) > 0 {
                text.push(' ');
            }
        }
        if let Ok(q) = Query::parse(&text) {
            let mut c = q.collector();
            for d in &docs {
                if q.matches(d) {
                    c.push(d.clone());
                }
                let _ = q.project(d.clone());
            }
            let _ = c.finish();
        }
        let _ = Condition::parse(&text, Dialect::Routing);
        // Random characters, too.
        let noise: String = (0..rng.below(40))
            .map(|_| char::from_u32(rng.below(0x250) as u32).unwrap_or('?'))
            .collect();
        let _ = Query::parse(&noise);
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!(
        "SELECT * FROM devices WHERE {}1{}",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(Query::parse(&deep).is_err());
    let nots = format!("SELECT * FROM devices WHERE {} true", "NOT ".repeat(10_000));
    assert!(Query::parse(&nots).is_err());
    let minus = format!("SELECT * FROM devices WHERE {}x", "- ".repeat(10_000));
    assert!(Query::parse(&minus).is_err());
}

#[test]
fn double_brackets_quote_a_name() {
    let doc = json!({"configurations": {"fw-v1.2": {"status": "Applied"}}});
    let c = Condition::parse(
        "configurations.[[fw-v1.2]].status = 'Applied'",
        Dialect::Twin,
    )
    .unwrap();
    assert!(c.matches(&doc));
    assert!(Condition::parse("configurations.[[open", Dialect::Twin).is_err());
}

#[test]
fn device_job_filters_may_name_the_collection() {
    let record = json!({"deviceId": "d1", "jobId": "j1", "status": "completed"});
    for text in [
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1'",
        "SELECT * FROM devices.jobs WHERE jobId = 'j1' AND devices.jobs.status IN ['completed']",
    ] {
        assert!(Query::parse(text).unwrap().matches(&record), "{text}");
    }
    let other = Query::parse("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j2'").unwrap();
    assert!(!other.matches(&record));
    // Twin queries keep their paths as written.
    let twin = Query::parse("SELECT * FROM devices WHERE devices.jobs.jobId = 'j1'").unwrap();
    assert!(!twin.matches(&record));
}
