//! The built-in functions: type checks, string functions and mathematical functions, as the
//! Azure page "IoT Hub query language for device and module twins, jobs, and message routing"
//! ("Functions") and "IoT Hub message routing query syntax" list them. Twin queries spell the
//! string tests `STARTSWITH`/`ENDSWITH`, routing queries `STARTS_WITH`/`ENDS_WITH`.

use std::borrow::Cow;

use serde_json::Value;

use crate::value::{Val, boolean, number};

/// Which query language an expression is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Queries over twins and jobs (`POST /devices/query`).
    Twin,
    /// Message routing conditions.
    Routing,
}

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    IsDefined,
    IsNull,
    IsString,
    IsNumber,
    IsBool,
    IsObject,
    IsArray,
    IsPrimitive,
    StartsWith,
    EndsWith,
    Contains,
    Lower,
    Upper,
    Length,
    Substring,
    Concat,
    IndexOf,
    Trim,
    Ltrim,
    Rtrim,
    Abs,
    Ceiling,
    Floor,
    Exp,
    Power,
    Square,
    Sign,
    Sqrt,
}

/// Name, function, fewest and most arguments.
const FUNCTIONS: &[(&str, Func, usize, usize)] = &[
    ("IS_DEFINED", Func::IsDefined, 1, 1),
    ("IS_NULL", Func::IsNull, 1, 1),
    ("IS_STRING", Func::IsString, 1, 1),
    ("IS_NUMBER", Func::IsNumber, 1, 1),
    ("IS_BOOL", Func::IsBool, 1, 1),
    ("IS_OBJECT", Func::IsObject, 1, 1),
    ("IS_ARRAY", Func::IsArray, 1, 1),
    ("IS_PRIMITIVE", Func::IsPrimitive, 1, 1),
    ("CONTAINS", Func::Contains, 2, 2),
    ("LOWER", Func::Lower, 1, 1),
    ("UPPER", Func::Upper, 1, 1),
    ("LENGTH", Func::Length, 1, 1),
    ("SUBSTRING", Func::Substring, 2, 3),
    ("CONCAT", Func::Concat, 2, usize::MAX),
    ("INDEX_OF", Func::IndexOf, 2, 2),
    ("TRIM", Func::Trim, 1, 1),
    ("LTRIM", Func::Ltrim, 1, 1),
    ("RTRIM", Func::Rtrim, 1, 1),
    ("ABS", Func::Abs, 1, 1),
    ("CEILING", Func::Ceiling, 1, 1),
    ("FLOOR", Func::Floor, 1, 1),
    ("EXP", Func::Exp, 1, 1),
    ("POWER", Func::Power, 2, 2),
    ("SQUARE", Func::Square, 1, 1),
    ("SIGN", Func::Sign, 1, 1),
    ("SQRT", Func::Sqrt, 1, 1),
];

/// The aggregate functions of `SELECT` (with `GROUP BY`, or over the whole result).
pub(crate) const AGGREGATES: &[&str] = &["COUNT", "SUM", "AVG", "MIN", "MAX"];

/// The function called `name` (case-insensitive) in `dialect`, with its arity.
pub(crate) fn lookup(name: &str, dialect: Dialect) -> Option<(Func, usize, usize)> {
    let upper = name.to_ascii_uppercase();
    let dialect_specific = match (dialect, upper.as_str()) {
        (Dialect::Twin, "STARTSWITH") | (Dialect::Routing, "STARTS_WITH") => Some(Func::StartsWith),
        (Dialect::Twin, "ENDSWITH") | (Dialect::Routing, "ENDS_WITH") => Some(Func::EndsWith),
        _ => None,
    };
    if let Some(f) = dialect_specific {
        return Some((f, 2, 2));
    }
    FUNCTIONS
        .iter()
        .find(|(n, ..)| *n == upper)
        .map(|(_, f, min, max)| (*f, *min, *max))
}

fn string<'v>(v: &'v Val<'_>) -> Option<&'v str> {
    v.as_deref().and_then(Value::as_str)
}

fn float(v: &Val<'_>) -> Option<f64> {
    v.as_deref().and_then(Value::as_f64)
}

fn text<'a>(s: String) -> Val<'a> {
    Some(Cow::Owned(Value::String(s)))
}

/// Applies `func` to evaluated arguments. Arguments of the wrong type give undefined.
pub(crate) fn apply<'a>(func: Func, args: &[Val<'a>]) -> Val<'a> {
    let arg = |i: usize| args.get(i).cloned().flatten();
    let first = arg(0);
    let is = |test: fn(&Value) -> bool| boolean(first.as_deref().is_some_and(test));
    match func {
        Func::IsDefined => boolean(first.is_some()),
        Func::IsNull => is(Value::is_null),
        Func::IsString => is(Value::is_string),
        Func::IsNumber => is(Value::is_number),
        Func::IsBool => is(Value::is_boolean),
        Func::IsObject => is(Value::is_object),
        Func::IsArray => is(Value::is_array),
        Func::IsPrimitive => is(|v| !v.is_object() && !v.is_array()),
        Func::StartsWith | Func::EndsWith | Func::Contains => {
            let (s, part) = (string(&args[0])?, string(&args[1])?);
            boolean(match func {
                Func::StartsWith => s.starts_with(part),
                Func::EndsWith => s.ends_with(part),
                _ => s.contains(part),
            })
        }
        Func::Lower => text(string(&args[0])?.to_lowercase()),
        Func::Upper => text(string(&args[0])?.to_uppercase()),
        Func::Trim => text(string(&args[0])?.trim().to_owned()),
        Func::Ltrim => text(string(&args[0])?.trim_start().to_owned()),
        Func::Rtrim => text(string(&args[0])?.trim_end().to_owned()),
        Func::Length => number(string(&args[0])?.chars().count() as f64),
        Func::Substring => {
            let s = string(&args[0])?;
            let start = whole(&args[1])?;
            let len = match args.get(2) {
                Some(v) => whole(v)?,
                None => i64::MAX,
            };
            let start = usize::try_from(start.max(0)).ok()?;
            let len = usize::try_from(len.max(0)).ok()?;
            text(s.chars().skip(start).take(len).collect())
        }
        Func::Concat => {
            let mut out = String::new();
            for a in args {
                out.push_str(string(a)?);
            }
            text(out)
        }
        Func::IndexOf => {
            let (s, part) = (string(&args[0])?, string(&args[1])?);
            let index = s
                .find(part)
                .map_or(-1.0, |byte| s[..byte].chars().count() as f64);
            number(index)
        }
        Func::Abs => math(&first, f64::abs),
        Func::Ceiling => math(&first, f64::ceil),
        Func::Floor => math(&first, f64::floor),
        Func::Exp => math(&first, f64::exp),
        Func::Square => math(&first, |x| x * x),
        Func::Sqrt => math(&first, f64::sqrt),
        Func::Sign => math(&first, |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        Func::Power => number(float(&args[0])?.powf(float(&args[1])?)),
    }
}

fn whole(v: &Val<'_>) -> Option<i64> {
    let f = float(v)?;
    #[allow(clippy::cast_possible_truncation)]
    (f.fract() == 0.0).then_some(f as i64)
}

fn math<'a>(v: &Val<'_>, f: fn(f64) -> f64) -> Val<'a> {
    number(f(float(v)?))
}
