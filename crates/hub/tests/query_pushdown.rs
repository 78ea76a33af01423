//! `GROUP BY` (counts over an index, other aggregates over a covering index) and `ORDER BY`
//! with `TOP` computed by the store (push-down) answer exactly what
//! the hub's own evaluation answers: random small fleets, random queries, every page
//! compared as JSON text (so `1` and `1.0`, `'0'` and `0` must come out alike).
#![allow(clippy::unwrap_used)]

mod common;

use ironhub_hub::Hub;
use ironhub_hub::model::DeviceSpec;
use serde_json::{Value, json};

/// A small deterministic generator (xorshift), so that a failure names its seed.
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
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Values a property takes (`None`: missing).
fn values() -> Vec<Option<Value>> {
    vec![
        None,
        Some(json!("0")),
        Some(json!("1")),
        Some(json!(0)),
        Some(json!(1)),
        Some(json!(1.0)),
        Some(json!(2.5)),
        Some(json!(-3)),
        // Floating sums round by the order they are added in (device id order).
        Some(json!(0.1)),
        Some(json!(1e16)),
        Some(json!(0.7)),
        Some(json!(true)),
        Some(json!(false)),
        Some(json!("a\"b")),
        Some(json!("é")),
        Some(json!({"x": 1})),
    ]
}

/// Literals a query compares with, as query text.
const LITERALS: &[&str] = &[
    "'0'", "'1'", "0", "1", "1.0", "2.5", "-3", "-3.0", "0.7", "0.1", "1e16", "true", "false",
    "'é'", "'a'", "'a\"b'",
];
const PATHS: &[&str] = &[
    "tags.site",
    "tags.floor",
    "properties.reported.p",
    "properties.reported.t",
    "properties.desired.d",
    "properties.reported.missing",
];

async fn random_fleet(hub: &Hub, rng: &mut Rng) {
    let values = values();
    let n = rng.below(14);
    for i in 0..n {
        let id = format!("dev-{:02}", rng.below(40) * 100 + i);
        hub.put_device(&id, &DeviceSpec::default(), None)
            .await
            .unwrap();
        if rng.chance(15) {
            continue; // a device whose twin was never written
        }
        let mut sections = [
            serde_json::Map::new(),
            serde_json::Map::new(),
            serde_json::Map::new(),
        ];
        for (section, key) in [(0, "site"), (0, "floor"), (1, "d"), (2, "p"), (2, "t")] {
            if let Some(v) = rng.pick(&values) {
                sections[section].insert(key.into(), v.clone());
            }
        }
        let [tags, desired, reported] = sections;
        let doc = json!({"tags": tags, "properties": {"desired": desired}});
        hub.update_twin(&id, &doc, None, false).await.unwrap();
        hub.patch_reported(&id, Value::Object(reported).to_string().as_bytes())
            .await
            .unwrap();
    }
}

fn random_condition(rng: &mut Rng) -> String {
    let path = rng.pick(PATHS);
    match rng.below(10) {
        0 => {
            // One to four values, of any types.
            let list: Vec<&str> = (0..=rng.below(4)).map(|_| *rng.pick(LITERALS)).collect();
            format!("{path} IN [{}]", list.join(", "))
        }
        1 => format!("deviceId {} 'dev-1'", rng.pick(&["<", ">=", "="])),
        // Not push-down material: the hub evaluates these itself.
        2 => format!("NOT ({path} = {})", rng.pick(LITERALS)),
        _ => {
            let op = rng.pick(&["=", "<", "<=", ">", ">="]);
            let lit = rng.pick(LITERALS);
            if rng.chance(20) {
                format!("{lit} {op} {path}")
            } else {
                format!("{path} {op} {lit}")
            }
        }
    }
}

/// `SELECT TOP n … ORDER BY` one property, which the store may answer from an index.
fn random_top_query(rng: &mut Rng) -> String {
    let select = if rng.chance(50) {
        "*".to_owned()
    } else {
        format!("deviceId, {} AS v", rng.pick(PATHS))
    };
    let top = if rng.chance(90) {
        format!("TOP {} ", rng.below(8))
    } else {
        String::new()
    };
    let mut text = format!("SELECT {top}{select} FROM devices");
    let terms: Vec<String> = (0..rng.below(3)).map(|_| random_condition(rng)).collect();
    if !terms.is_empty() {
        text.push_str(&format!(" WHERE {}", terms.join(" AND ")));
    }
    let dir = rng.pick(&["", " ASC", " DESC"]);
    text.push_str(&format!(" ORDER BY {}{dir}", rng.pick(PATHS)));
    text
}

fn random_query(rng: &mut Rng) -> String {
    if rng.chance(30) {
        return random_top_query(rng);
    }
    let mut keys: Vec<&str> = Vec::new();
    if rng.chance(85) {
        for _ in 0..=rng.below(2) {
            let k = if rng.chance(10) {
                "deviceId"
            } else {
                rng.pick(PATHS)
            };
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mut items: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            if rng.chance(50) {
                format!("{k} AS k{i}")
            } else {
                (*k).to_owned()
            }
        })
        .collect();
    for i in 0..=rng.below(3) {
        let arg = rng.pick(PATHS);
        let f = rng.pick(&["COUNT()", "SUM", "AVG", "MIN", "MAX", "COUNT()"]);
        let call = if f.ends_with(')') {
            (*f).to_owned()
        } else {
            format!("{f}({arg})")
        };
        items.push(format!("{call} AS a{i}"));
    }
    // Items may come in any order; the names keep them apart.
    if rng.chance(30) {
        items.reverse();
    }
    let top = if rng.chance(20) {
        format!("TOP {} ", rng.below(4))
    } else {
        String::new()
    };
    let mut text = format!("SELECT {top}{} FROM devices", items.join(", "));
    let terms: Vec<String> = (0..rng.below(3)).map(|_| random_condition(rng)).collect();
    if !terms.is_empty() {
        text.push_str(&format!(" WHERE {}", terms.join(" AND ")));
    }
    if !keys.is_empty() {
        text.push_str(&format!(" GROUP BY {}", keys.join(", ")));
        if rng.chance(40) {
            let k = rng.pick(&keys);
            let dir = rng.pick(&["", " ASC", " DESC"]);
            text.push_str(&format!(" ORDER BY {k}{dir}"));
        }
    }
    text
}

/// Every page of a query, as JSON text, the page size and continuation tokens included.
async fn pages(hub: &Hub, text: &str, size: usize, scanned: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = if scanned {
            hub.query_twins_scanned(text, token.as_deref(), Some(size))
                .await
        } else {
            hub.query_twins(text, token.as_deref(), Some(size)).await
        }
        .unwrap_or_else(|e| panic!("{text}: {e}"));
        out.push(Value::Array(page.items).to_string());
        match page.continuation {
            Some(t) => token = Some(t),
            None => return out,
        }
        assert!(out.len() < 100, "{text}: paging does not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_pushed_to_the_store_answer_as_the_hub_does() {
    for seed in 1..=30u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let (hub, _dir) = common::temp_hub().await;
        random_fleet(&hub, &mut rng).await;
        for _ in 0..40 {
            let text = random_query(&mut rng);
            let size = 1 + rng.below(4);
            let pushed = pages(&hub, &text, size, false).await;
            let scanned = pages(&hub, &text, size, true).await;
            assert_eq!(pushed, scanned, "seed {seed}: {text}");
        }
    }
}
