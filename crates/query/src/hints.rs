//! What a store may use to narrow the documents it reads for a query: the simple comparisons
//! of a property with a literal that the `WHERE` clause requires (the terms of its top-level
//! `AND`). A store that uses them may still return more documents; the query checks each one.

use serde_json::Value;

use crate::expr::{BinOp, Expr, Segment};
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

fn keys(e: &Expr) -> Option<Vec<String>> {
    let Expr::Path(path) = e else { return None };
    path.iter()
        .map(|s| match s {
            Segment::Key(k) => Some(k.clone()),
            Segment::Index(_) => None,
        })
        .collect()
}

fn collect(e: &Expr, out: &mut Vec<Hint>) {
    match e {
        Expr::Binary(BinOp::And, l, r) => {
            collect(l, out);
            collect(r, out);
        }
        Expr::Binary(op, l, r) => {
            let (path, value, flipped) = match (keys(l), scalar(r), keys(r), scalar(l)) {
                (Some(p), Some(v), ..) => (p, v, false),
                (_, _, Some(p), Some(v)) => (p, v, true),
                _ => return,
            };
            let op = match (op, flipped) {
                (BinOp::Eq, _) => HintOp::Eq,
                (BinOp::Lt, false) | (BinOp::Gt, true) => HintOp::Lt,
                (BinOp::Le, false) | (BinOp::Ge, true) => HintOp::Le,
                (BinOp::Gt, false) | (BinOp::Lt, true) => HintOp::Gt,
                (BinOp::Ge, false) | (BinOp::Le, true) => HintOp::Ge,
                _ => return,
            };
            out.push(Hint {
                path,
                op,
                values: vec![value.clone()],
            });
        }
        Expr::In {
            expr,
            list,
            negated: false,
        } => {
            let Some(path) = keys(expr) else { return };
            let values: Option<Vec<Value>> = list.iter().map(|i| scalar(i).cloned()).collect();
            if let Some(values) = values {
                out.push(Hint {
                    path,
                    op: HintOp::In,
                    values,
                });
            }
        }
        _ => {}
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
}
