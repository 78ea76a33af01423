//! Values as the language sees them: a JSON value, or undefined (a property that is not
//! there). Undefined is not null: `IS_DEFINED(x)` is false for it, and no comparison with it
//! is true.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

/// A value during evaluation: `None` is undefined. Borrowed from the document when it can be.
pub type Val<'a> = Option<Cow<'a, Value>>;

/// `true` only for the JSON value `true`.
pub(crate) fn is_true(v: &Val<'_>) -> bool {
    matches!(v.as_deref(), Some(Value::Bool(true)))
}

/// A boolean value.
pub(crate) fn boolean<'a>(b: bool) -> Val<'a> {
    Some(Cow::Owned(Value::Bool(b)))
}

/// Equality without coercion: numbers with numbers (by value, `1` equals `1.0`), strings with
/// strings, booleans with booleans, null with null, arrays and objects element by element.
/// Values of different types are not comparable (`None`).
pub(crate) fn equal(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Null, Value::Null) => Some(true),
        (Value::Bool(x), Value::Bool(y)) => Some(x == y),
        (Value::Number(_), Value::Number(_)) => Some(compare(a, b)? == Ordering::Equal),
        (Value::String(x), Value::String(y)) => Some(x == y),
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            for (p, q) in x.iter().zip(y) {
                if equal(p, q) != Some(true) {
                    return Some(false);
                }
            }
            Some(true)
        }
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            Some(
                x.iter()
                    .all(|(k, v)| y.get(k).and_then(|w| equal(v, w)) == Some(true)),
            )
        }
        _ => None,
    }
}

/// Order without coercion: numbers among numbers, strings among strings (by code point);
/// anything else is not ordered (`None`).
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
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
        _ => None,
    }
}

/// A total order over every value, for `ORDER BY`: undefined, null, booleans, numbers,
/// strings, arrays, objects; within a type, its natural order.
pub(crate) fn sort_order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None => 0,
            Some(Value::Null) => 1,
            Some(Value::Bool(_)) => 2,
            Some(Value::Number(_)) => 3,
            Some(Value::String(_)) => 4,
            Some(Value::Array(_)) => 5,
            Some(Value::Object(_)) => 6,
        }
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x @ Value::Number(_)), Some(y @ Value::Number(_)))
        | (Some(x @ Value::String(_)), Some(y @ Value::String(_))) => {
            compare(x, y).unwrap_or(Ordering::Equal)
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for (p, q) in x.iter().zip(y) {
                let o = sort_order(Some(p), Some(q));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Some(Value::Object(x)), Some(Value::Object(y))) => x.len().cmp(&y.len()),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A JSON number from an `f64` (undefined for NaN and infinities, which JSON cannot hold);
/// whole numbers become integers, as IoT Hub writes them.
pub(crate) fn number<'a>(f: f64) -> Val<'a> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Cow::Owned(Value::from(f as i64)));
    }
    serde_json::Number::from_f64(f).map(|n| Cow::Owned(Value::Number(n)))
}
