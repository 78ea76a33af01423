//! Expressions: the part of the language that `WHERE`, `SELECT` items, `GROUP BY`, `ORDER BY`
//! and (later) routing conditions share, and their evaluation over one JSON document.

use std::borrow::Cow;

use serde_json::Value;

use crate::functions::{self, Func};
use crate::value::{self, Val, boolean, compare, equal};

/// One step of a property path.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// `.name` or `['name']`.
    Key(String),
    /// `[3]`: an array element.
    Index(usize),
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// An expression of the query language.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A string, number, `true`, `false` or `null`.
    Literal(Value),
    /// A property of the document: `properties.reported.temperature`, `tags['a b']`.
    Path(Vec<Segment>),
    /// `[a, b, …]`.
    Array(Vec<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `x IN [..]` (or `NIN` when `negated`).
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Call(Func, Vec<Expr>),
}

/// `doc` at `path`; undefined where a step is missing.
pub fn lookup<'a>(doc: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    let mut at = doc;
    for (i, seg) in path.iter().enumerate() {
        at = match (seg, at) {
            (Segment::Key(k), Value::Object(map)) => match map.get(k) {
                Some(v) => v,
                // The twin's own fields are matched ignoring case (`DeviceId`, `LastActivityTime`),
                // as IoT Hub's examples write them; tags and properties are exact.
                None if i == 0 => map
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v)?,
                None => return None,
            },
            (Segment::Index(n), Value::Array(items)) => items.get(*n)?,
            _ => return None,
        };
    }
    Some(at)
}

impl Expr {
    /// The value of the expression over `doc`.
    pub fn eval<'a>(&self, doc: &'a Value) -> Val<'a> {
        match self {
            Expr::Literal(v) => Some(Cow::Owned(v.clone())),
            Expr::Path(path) => lookup(doc, path).map(Cow::Borrowed),
            Expr::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(item.eval(doc)?.into_owned());
                }
                Some(Cow::Owned(Value::Array(out)))
            }
            Expr::Not(e) => match e.eval(doc).as_deref() {
                Some(Value::Bool(b)) => boolean(!b),
                _ => None,
            },
            Expr::Neg(e) => arithmetic(BinOp::Sub, &Value::from(0), e.eval(doc).as_deref()?),
            Expr::Binary(op, l, r) => binary(*op, l, r, doc),
            Expr::In {
                expr,
                list,
                negated,
            } => {
                let v = expr.eval(doc)?;
                let found = list.iter().any(|item| {
                    item.eval(doc)
                        .is_some_and(|candidate| equal(&v, &candidate) == Some(true))
                });
                boolean(found != *negated)
            }
            Expr::Call(func, args) => {
                let args: Vec<Val<'a>> = args.iter().map(|a| a.eval(doc)).collect();
                functions::apply(*func, &args)
            }
        }
    }

    /// The name a projection of this expression gets without `AS`: a path's last property.
    /// The keys of a property path made of keys only (no array index).
    pub(crate) fn keys(&self) -> Option<Vec<String>> {
        let Expr::Path(path) = self else { return None };
        path.iter()
            .map(|s| match s {
                Segment::Key(k) => Some(k.clone()),
                Segment::Index(_) => None,
            })
            .collect()
    }

    pub(crate) fn default_name(&self) -> Option<&str> {
        match self {
            Expr::Path(path) => path.iter().rev().find_map(|s| match s {
                Segment::Key(k) => Some(k.as_str()),
                Segment::Index(_) => None,
            }),
            _ => None,
        }
    }
}

fn binary<'a>(op: BinOp, l: &Expr, r: &Expr, doc: &'a Value) -> Val<'a> {
    match op {
        BinOp::And => {
            let (a, b) = (l.eval(doc), r.eval(doc));
            match (a.as_deref(), b.as_deref()) {
                (Some(Value::Bool(false)), _) | (_, Some(Value::Bool(false))) => boolean(false),
                (Some(Value::Bool(true)), Some(Value::Bool(true))) => boolean(true),
                _ => None,
            }
        }
        BinOp::Or => {
            let (a, b) = (l.eval(doc), r.eval(doc));
            match (a.as_deref(), b.as_deref()) {
                (Some(Value::Bool(true)), _) | (_, Some(Value::Bool(true))) => boolean(true),
                (Some(Value::Bool(false)), Some(Value::Bool(false))) => boolean(false),
                _ => None,
            }
        }
        _ => {
            let (a, b) = (l.eval(doc)?, r.eval(doc)?);
            match op {
                BinOp::Eq => boolean(equal(&a, &b)?),
                BinOp::Ne => boolean(!equal(&a, &b)?),
                BinOp::Lt => boolean(compare(&a, &b)?.is_lt()),
                BinOp::Le => boolean(compare(&a, &b)?.is_le()),
                BinOp::Gt => boolean(compare(&a, &b)?.is_gt()),
                BinOp::Ge => boolean(compare(&a, &b)?.is_ge()),
                _ => arithmetic(op, &a, &b),
            }
        }
    }
}

/// Arithmetic on numbers only (no coercion): whole numbers stay whole while they fit;
/// division by zero is undefined.
fn arithmetic<'a>(op: BinOp, a: &Value, b: &Value) -> Val<'a> {
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return None;
    };
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        let whole = match op {
            BinOp::Add => x.checked_add(y),
            BinOp::Sub => x.checked_sub(y),
            BinOp::Mul => x.checked_mul(y),
            BinOp::Mod => x.checked_rem(y),
            BinOp::Div if y != 0 && x % y == 0 => x.checked_div(y),
            _ => None,
        };
        if let Some(n) = whole {
            return Some(Cow::Owned(Value::from(n)));
        }
    }
    let (x, y) = (x.as_f64()?, y.as_f64()?);
    let f = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div if y != 0.0 => x / y,
        BinOp::Mod if y != 0.0 => x % y,
        _ => return None,
    };
    value::number(f)
}
