//! What a store may use to narrow the documents it reads for a query: the simple comparisons
//! of a property with a literal that the `WHERE` clause requires (the terms of its top-level
//! `AND`). A store that uses them may still return more documents; the query checks each one.

use serde_json::Value;

use crate::expr::{BinOp, Expr};
use crate::select::Query;

/// How a [`Hint`]'s property compares with its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    /// Equal to one of the values.
    In,
}

impl HintOp {
    /// The comparison's operator as the language and SQL write it (`In`: `=`, with one of
    /// the values).
    pub fn symbol(self) -> &'static str {
        match self {
            HintOp::Eq | HintOp::In => "=",
            HintOp::Lt => "<",
            HintOp::Le => "<=",
            HintOp::Gt => ">",
            HintOp::Ge => ">=",
        }
    }
}

/// "The property at `path` is `op` `values`", which every matching document satisfies.
/// Values are strings, numbers or booleans (never null, arrays or objects); the comparison
/// is typed (`'0'` is not `0`).
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    pub path: Vec<String>,
    pub op: HintOp,
    pub values: Vec<Value>,
}

fn scalar(e: &Expr) -> Option<&Value> {
    match e {
        Expr::Literal(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => Some(v),
        _ => None,
    }
}

/// Adds the hints of `e` (a term of the top-level `AND`) to `out`; false when some part of
/// it gave no hint (the hints then only narrow: they do not say the whole clause).
fn collect(e: &Expr, out: &mut Vec<Hint>) -> bool {
    match e {
        Expr::Binary(BinOp::And, l, r) => {
            let left = collect(l, out);
            collect(r, out) && left
        }
        Expr::Binary(op, l, r) => {
            let (path, value, flipped) = match (Expr::keys(l), scalar(r), Expr::keys(r), scalar(l))
            {
                (Some(p), Some(v), ..) => (p, v, false),
                (_, _, Some(p), Some(v)) => (p, v, true),
                _ => return false,
            };
            let op = match (op, flipped) {
                (BinOp::Eq, _) => HintOp::Eq,
                (BinOp::Lt, false) | (BinOp::Gt, true) => HintOp::Lt,
                (BinOp::Le, false) | (BinOp::Ge, true) => HintOp::Le,
                (BinOp::Gt, false) | (BinOp::Lt, true) => HintOp::Gt,
                (BinOp::Ge, false) | (BinOp::Le, true) => HintOp::Ge,
                _ => return false,
            };
            out.push(Hint {
                path,
                op,
                values: vec![value.clone()],
            });
            true
        }
        Expr::In {
            expr,
            list,
            negated: false,
        } => {
            let Some(path) = Expr::keys(expr) else {
                return false;
            };
            let values: Option<Vec<Value>> = list.iter().map(|i| scalar(i).cloned()).collect();
            match values {
                Some(values) if !values.is_empty() => {
                    out.push(Hint {
                        path,
                        op: HintOp::In,
                        values,
                    });
                    true
                }
                _ => false,
            }
        }
        _ => false,
    }
}

impl Query {
    /// The comparisons every matching document satisfies (see the module's notes).
    pub fn hints(&self) -> Vec<Hint> {
        let mut out = Vec::new();
        if let Some(f) = &self.filter {
            collect(f, &mut out);
        }
        out
    }

    /// The whole `WHERE` clause as hints, when it is nothing but hints joined by `AND` (a
    /// document matches exactly when it satisfies them all); no clause gives none.
    pub fn exact_hints(&self) -> Option<Vec<Hint>> {
        let mut out = Vec::new();
        match &self.filter {
            Some(f) => collect(f, &mut out).then_some(out),
            None => Some(out),
        }
    }
}
