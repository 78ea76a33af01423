//! Message routing conditions, as the Azure page "IoT Hub message routing query syntax"
//! describes them: a condition over one message's application properties (by name), its
//! system properties (`$contentType`, `$connectionDeviceId`, `$iothub-enqueuedtime`, …), its
//! body when the body is JSON (`$body.temperature > 30`) and the sender's twin
//! (`$twin.tags.location`). The expression language is the twin queries' one
//! ([`Condition`] in the routing dialect); this file adds the message's view.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::QueryError;
use crate::condition::Condition;
use crate::expr::{Expr, Segment};
use crate::functions::Dialect;
use crate::value::is_true;

/// The name of the message body in a condition.
pub const BODY: &str = "$body";
/// The name of the sender's twin in a condition.
pub const TWIN: &str = "$twin";

/// The system properties a condition names with `$`, each with the event's property it
/// reads. Several names read one property: IoT Hub accepts the short names of its docs and
/// the wire names.
const SYSTEM_NAMES: &[(&str, &str)] = &[
    ("$contentType", "content-type"),
    ("$content-type", "content-type"),
    ("$contentEncoding", "content-encoding"),
    ("$content-encoding", "content-encoding"),
    ("$messageId", "message-id"),
    ("$message-id", "message-id"),
    ("$correlationId", "correlation-id"),
    ("$correlation-id", "correlation-id"),
    ("$userId", "user-id"),
    ("$user-id", "user-id"),
    ("$to", "to"),
    ("$expiryTimeUtc", "absolute-expiry-time"),
    ("$absolute-expiry-time", "absolute-expiry-time"),
    ("$connectionDeviceId", "iothub-connection-device-id"),
    (
        "$iothub-connection-device-id",
        "iothub-connection-device-id",
    ),
    ("$connectionModuleId", "iothub-connection-module-id"),
    (
        "$iothub-connection-module-id",
        "iothub-connection-module-id",
    ),
    (
        "$iothub-connection-auth-method",
        "iothub-connection-auth-method",
    ),
    (
        "$iothub-connection-auth-generation-id",
        "iothub-connection-auth-generation-id",
    ),
    ("$creationTimeUtc", "iothub-creation-time-utc"),
    ("$iothub-creation-time-utc", "iothub-creation-time-utc"),
    ("$iothub-enqueuedtime", "iothub-enqueuedtime"),
    ("$enqueuedTime", "iothub-enqueuedtime"),
    ("$iothub-interface-name", "iothub-interface-id"),
    ("$iothub-interface-id", "iothub-interface-id"),
    ("$iothub-message-source", "iothub-message-source"),
    ("$messageSource", "iothub-message-source"),
    ("$outputName", "iothub-outputname"),
    ("$dt-dataschema", "dt-dataschema"),
    ("$dt-subject", "dt-subject"),
];

/// The event's property a system property name reads (`contentType` or `$contentType` →
/// `content-type`; a wire name reads itself), ignoring case.
pub fn system_property_key(name: &str) -> Option<&'static str> {
    let bare = name.strip_prefix('$').unwrap_or(name);
    SYSTEM_NAMES
        .iter()
        .find(|(n, _)| n[1..].eq_ignore_ascii_case(bare))
        .map(|(_, key)| *key)
}

/// A parsed routing condition.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingQuery {
    condition: Condition,
    uses_twin: bool,
    uses_body: bool,
}

impl RoutingQuery {
    /// Parses a routing condition; an empty one is `true`, as IoT Hub takes a route without
    /// a condition.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let text = if text.trim().is_empty() { "true" } else { text };
        let condition = Condition::parse(text, Dialect::Routing)?;
        let mut uses_twin = false;
        let mut uses_body = false;
        visit_paths(&condition.0, &mut |path| match path.first() {
            Some(Segment::Key(k)) if k.eq_ignore_ascii_case(TWIN) => uses_twin = true,
            Some(Segment::Key(k)) if k.eq_ignore_ascii_case(BODY) => uses_body = true,
            _ => {}
        });
        Ok(RoutingQuery {
            condition,
            uses_twin,
            uses_body,
        })
    }

    /// Whether the condition reads the sender's twin (which then has to be read).
    pub fn uses_twin(&self) -> bool {
        self.uses_twin
    }

    /// Whether the condition reads the body.
    pub fn uses_body(&self) -> bool {
        self.uses_body
    }

    /// The condition's value over a message's view ([`message_view`]): true, false, or
    /// `None` when it is undefined (not a boolean): such a message is not routed.
    pub fn evaluate(&self, view: &Value) -> Option<bool> {
        match self.condition.0.eval(view).as_deref() {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// Whether the message is routed: the condition is true.
    pub fn matches(&self, view: &Value) -> bool {
        is_true(&self.condition.0.eval(view))
    }
}

fn visit_paths(expr: &Expr, f: &mut impl FnMut(&[Segment])) {
    match expr {
        Expr::Literal(_) => {}
        Expr::Path(path) => f(path),
        Expr::Array(items) | Expr::Call(_, items) => items.iter().for_each(|e| visit_paths(e, f)),
        Expr::Not(e) | Expr::Neg(e) => visit_paths(e, f),
        Expr::Binary(_, l, r) => {
            visit_paths(l, f);
            visit_paths(r, f);
        }
        Expr::In { expr, list, .. } => {
            visit_paths(expr, f);
            list.iter().for_each(|e| visit_paths(e, f));
        }
    }
}

/// One message as a routing condition sees it.
#[derive(Debug, Clone, Copy)]
pub struct MessageParts<'a> {
    /// The event's system properties under IoT Hub's names (`content-type`, …); the enqueued
    /// time, when known, as `iothub-enqueuedtime`.
    pub system: &'a BTreeMap<String, String>,
    /// The sender's properties; `None` is a property without a value.
    pub application: &'a BTreeMap<String, Option<String>>,
    pub body: &'a [u8],
    /// The sender's twin (`tags`, `properties`, …), when the condition reads it.
    pub twin: Option<&'a Value>,
}

/// The document a routing condition is evaluated over: the application properties by name
/// (their values are strings, or null without a value), the system properties under their
/// `$` names, `$body` when [`json_body`] reads one, `$twin` when given.
pub fn message_view(parts: MessageParts<'_>) -> Value {
    let mut doc = Map::new();
    for (k, v) in parts.application {
        doc.insert(k.clone(), v.clone().map_or(Value::Null, Value::String));
    }
    for (name, key) in SYSTEM_NAMES {
        if let Some(v) = parts.system.get(*key) {
            doc.insert((*name).to_owned(), Value::String(v.clone()));
        }
    }
    let content_type = parts.system.get("content-type").map(String::as_str);
    let encoding = parts.system.get("content-encoding").map(String::as_str);
    if let Some(body) = json_body(content_type, encoding, parts.body) {
        doc.insert(BODY.to_owned(), body);
    }
    if let Some(twin) = parts.twin {
        doc.insert(TWIN.to_owned(), twin.clone());
    }
    Value::Object(doc)
}

/// The body as JSON, when routing may read it: content type `application/json` and encoding
/// UTF-8, UTF-16 or UTF-32 (little-endian unless a byte order mark says otherwise), as
/// IoT Hub documents; anything else (or a body that does not parse) leaves `$body`
/// undefined.
pub fn json_body(content_type: Option<&str>, encoding: Option<&str>, body: &[u8]) -> Option<Value> {
    let media = content_type?.split(';').next()?.trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return None;
    }
    let encoding = encoding?.trim().to_ascii_lowercase().replace('-', "");
    let text = match encoding.as_str() {
        "utf8" => std::str::from_utf8(body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body))
            .ok()?
            .to_owned(),
        "utf16" | "utf16le" | "utf16be" => {
            let (big, bytes) = byte_order(body, encoding == "utf16be", b"\xFE\xFF", b"\xFF\xFE");
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| {
                    let pair = [c[0], c[1]];
                    if big {
                        u16::from_be_bytes(pair)
                    } else {
                        u16::from_le_bytes(pair)
                    }
                })
                .collect();
            String::from_utf16(&units).ok()?
        }
        "utf32" | "utf32le" | "utf32be" => {
            let (big, bytes) = byte_order(
                body,
                encoding == "utf32be",
                b"\x00\x00\xFE\xFF",
                b"\xFF\xFE\x00\x00",
            );
            if bytes.len() % 4 != 0 {
                return None;
            }
            bytes
                .chunks_exact(4)
                .map(|c| {
                    let quad = [c[0], c[1], c[2], c[3]];
                    char::from_u32(if big {
                        u32::from_be_bytes(quad)
                    } else {
                        u32::from_le_bytes(quad)
                    })
                })
                .collect::<Option<String>>()?
        }
        _ => return None,
    };
    serde_json::from_str(&text).ok()
}

/// Whether the bytes are big-endian (by their byte order mark, else `big`) and the bytes
/// after the mark.
fn byte_order<'a>(body: &'a [u8], big: bool, be_mark: &[u8], le_mark: &[u8]) -> (bool, &'a [u8]) {
    if let Some(rest) = body.strip_prefix(be_mark) {
        (true, rest)
    } else if let Some(rest) = body.strip_prefix(le_mark) {
        (false, rest)
    } else {
        (big, body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn view(content_type: &str, body: &[u8], twin: Option<&Value>) -> Value {
        let system: BTreeMap<String, String> = [
            ("content-type".to_owned(), content_type.to_owned()),
            ("content-encoding".to_owned(), "utf-8".to_owned()),
            ("iothub-connection-device-id".to_owned(), "dev1".to_owned()),
            (
                "iothub-enqueuedtime".to_owned(),
                "2026-01-01T00:00:00Z".to_owned(),
            ),
        ]
        .into();
        let application: BTreeMap<String, Option<String>> = [
            ("level".to_owned(), Some("critical".to_owned())),
            ("flag".to_owned(), None),
        ]
        .into();
        message_view(MessageParts {
            system: &system,
            application: &application,
            body,
            twin,
        })
    }

    fn eval(condition: &str, view: &Value) -> Option<bool> {
        RoutingQuery::parse(condition).unwrap().evaluate(view)
    }

    #[test]
    fn conditions_read_properties_system_properties_body_and_twin() {
        let twin = serde_json::json!({"tags": {"location": "plant-1"}, "properties": {"desired": {"x": 1}}});
        let v = view(
            "application/json",
            br#"{"temperature": 31, "a": {"b": "c"}}"#,
            Some(&twin),
        );
        assert_eq!(eval("level = 'critical'", &v), Some(true));
        assert_eq!(eval("$connectionDeviceId = 'dev1'", &v), Some(true));
        assert_eq!(
            eval("$iothub-connection-device-id = 'dev1'", &v),
            Some(true)
        );
        assert_eq!(eval("$iothub-enqueuedtime > '2025'", &v), Some(true));
        assert_eq!(
            eval(
                "$contentType = 'application/json' AND $contentEncoding = 'utf-8'",
                &v
            ),
            Some(true)
        );
        assert_eq!(eval("$body.temperature > 30", &v), Some(true));
        assert_eq!(
            eval("$body.a.b = 'c' AND $body.temperature < 30", &v),
            Some(false)
        );
        assert_eq!(eval("$twin.tags.location = 'plant-1'", &v), Some(true));
        assert_eq!(eval("$twin.properties.desired.x = 1", &v), Some(true));
        assert_eq!(eval("STARTS_WITH(level, 'crit')", &v), Some(true));
        assert_eq!(eval("IS_DEFINED(flag)", &v), Some(true));
        assert_eq!(eval("missing = 'x'", &v), None, "undefined is not routed");
        assert_eq!(eval("", &v), Some(true), "no condition is true");
        assert_eq!(
            eval(
                "$body.temperature > 30",
                &view("text/plain", b"{\"temperature\": 31}", None)
            ),
            None
        );
        let q = RoutingQuery::parse("$twin.tags.x = 1 OR $body.y = 2").unwrap();
        assert!(q.uses_twin() && q.uses_body());
        assert!(!RoutingQuery::parse("a = 'b'").unwrap().uses_twin());
    }

    #[test]
    fn bodies_are_read_in_the_encodings_iot_hub_documents() {
        let text = r#"{"t": 5}"#;
        let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let utf16be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        let utf32: Vec<u8> = text
            .chars()
            .flat_map(|c| u32::from(c).to_le_bytes())
            .collect();
        let want = Some(serde_json::json!({"t": 5}));
        let ct = Some("application/json; charset=utf-8");
        assert_eq!(json_body(ct, Some("UTF-8"), text.as_bytes()), want);
        assert_eq!(json_body(ct, Some("utf-16"), &utf16), want);
        assert_eq!(json_body(ct, Some("utf-16"), &utf16be), want);
        assert_eq!(json_body(ct, Some("utf-32"), &utf32), want);
        assert_eq!(json_body(ct, None, text.as_bytes()), None);
        assert_eq!(
            json_body(Some("text/plain"), Some("utf-8"), text.as_bytes()),
            None
        );
        assert_eq!(json_body(ct, Some("utf-8"), b"{not json"), None);
        assert_eq!(json_body(ct, Some("utf-16"), b"abc"), None);
    }

    #[test]
    fn mistakes_are_reported_with_their_position() {
        let e = RoutingQuery::parse("$body.t >").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(RoutingQuery::parse("a = = b").is_err());
        assert!(
            RoutingQuery::parse("STARTSWITH(a, 'b')").is_err(),
            "the routing spelling is STARTS_WITH"
        );
    }

    /// No input makes the parser or the evaluator panic (a deterministic random walk over
    /// the language's characters and fragments).
    #[test]
    fn random_conditions_never_panic() {
        const PIECES: &[&str] = &[
            "$body",
            "$twin",
            ".",
            "tags",
            "[",
            "]",
            "'",
            "\"",
            "(",
            ")",
            "=",
            "<>",
            "!=",
            "<",
            ">=",
            " AND ",
            " OR ",
            "NOT ",
            "IN",
            "NIN",
            ",",
            "1",
            "-2.5e3",
            "x",
            "$",
            "-",
            "\\",
            "STARTS_WITH",
            "IS_DEFINED",
            "CONCAT",
            "LENGTH",
            "*",
            "/",
            "%",
            "+",
            "true",
            "null",
            " ",
            "é",
            "\u{0}",
            "$iothub-",
            "9999999999999999999999",
            "[0]",
            "'a'",
            "`",
            "@",
            "#",
        ];
        let v = view(
            "application/json",
            br#"{"t": [1, {"a": null}]}"#,
            Some(&serde_json::json!({"tags": {}})),
        );
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            let mut text = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = seed % 12;
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(PIECES[(seed % PIECES.len() as u64) as usize]);
            }
            if let Ok(q) = RoutingQuery::parse(&text) {
                let _ = q.evaluate(&v);
            }
        }
    }
}
