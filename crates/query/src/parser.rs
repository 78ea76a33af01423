//! A recursive-descent parser over the tokens, for expressions (here) and whole queries
//! (`select.rs`). Precedence, loosest first: `OR`, `AND`, `NOT`, comparisons and
//! `IN`/`NIN`, `+ -`, `* / %`, unary minus.

use serde_json::Value;

use crate::QueryError;
use crate::expr::{BinOp, Expr, Segment};
use crate::functions::{self, AGGREGATES, Dialect};
use crate::lexer::{Tok, Token};

/// How deeply expressions may nest (parentheses, `NOT`s, minus signs): deeper input is
/// rejected rather than risking the stack.
const MAX_DEPTH: usize = 64;

const KEYWORDS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "ASC", "DESC", "TOP", "AS", "AND", "OR",
    "NOT", "IN", "NIN",
];

pub(crate) struct Parser<'t> {
    text: &'t str,
    toks: Vec<Token>,
    at: usize,
    depth: usize,
    pub(crate) dialect: Dialect,
}

impl<'t> Parser<'t> {
    pub(crate) fn new(text: &'t str, toks: Vec<Token>, dialect: Dialect) -> Self {
        Parser {
            text,
            toks,
            at: 0,
            depth: 0,
            dialect,
        }
    }

    pub(crate) fn peek(&self) -> &Token {
        // `tokenize` always ends with `Eof`, and the parser never moves past it.
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    pub(crate) fn peek_at(&self, ahead: usize) -> &Tok {
        &self.toks[(self.at + ahead).min(self.toks.len() - 1)].tok
    }

    pub(crate) fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.at += 1;
        }
        t
    }

    /// An error at the current token.
    pub(crate) fn error(&self, message: impl Into<String>) -> QueryError {
        self.error_at(self.peek().pos, message)
    }

    pub(crate) fn error_at(&self, pos: usize, message: impl Into<String>) -> QueryError {
        QueryError::at(self.text, pos, message)
    }

    /// An error saying what was expected where the current token is.
    pub(crate) fn unexpected(&self, expected: &str) -> QueryError {
        let found = match &self.peek().tok {
            Tok::Eof => "end of query".to_owned(),
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Num(n) => format!("number {n}"),
            Tok::Sym(s) => format!("'{s}'"),
        };
        self.error(format!("Expected {expected} but found {found}"))
    }

    /// Whether the current token is the keyword `kw` (case-insensitive).
    pub(crate) fn is_keyword(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    /// Consumes the keyword `kw` if it is next.
    pub(crate) fn eat_keyword(&mut self, kw: &str) -> bool {
        let yes = self.is_keyword(kw);
        if yes {
            self.bump();
        }
        yes
    }

    pub(crate) fn expect_keyword(&mut self, kw: &str) -> Result<(), QueryError> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(self.unexpected(kw))
        }
    }

    pub(crate) fn eat_sym(&mut self, sym: &str) -> bool {
        let yes = matches!(self.peek().tok, Tok::Sym(s) if s == sym);
        if yes {
            self.bump();
        }
        yes
    }

    pub(crate) fn expect_sym(&mut self, sym: &str) -> Result<(), QueryError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{sym}'")))
        }
    }

    pub(crate) fn expect_end(&self) -> Result<(), QueryError> {
        if self.peek().tok == Tok::Eof {
            Ok(())
        } else {
            Err(self.unexpected("end of query"))
        }
    }

    /// A name that is not a keyword.
    pub(crate) fn name(&mut self) -> Result<String, QueryError> {
        match &self.peek().tok {
            Tok::Ident(s) if !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s)) => {
                let s = s.clone();
                self.bump();
                Ok(s)
            }
            _ => Err(self.unexpected("a name")),
        }
    }

    fn enter(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("The expression is nested too deeply"));
        }
        Ok(())
    }

    /// One expression.
    pub(crate) fn expr(&mut self) -> Result<Expr, QueryError> {
        self.enter()?;
        let e = self.or();
        self.depth -= 1;
        e
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.and()?;
        while self.eat_keyword("OR") {
            e = Expr::Binary(BinOp::Or, Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.not()?;
        while self.eat_keyword("AND") {
            e = Expr::Binary(BinOp::And, Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.eat_keyword("NOT") {
            self.enter()?;
            let e = self.not();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let left = self.additive()?;
        let op = match self.peek().tok {
            Tok::Sym("=") => Some(BinOp::Eq),
            Tok::Sym("!=") | Tok::Sym("<>") => Some(BinOp::Ne),
            Tok::Sym("<") => Some(BinOp::Lt),
            Tok::Sym("<=") => Some(BinOp::Le),
            Tok::Sym(">") => Some(BinOp::Gt),
            Tok::Sym(">=") => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let right = self.additive()?;
            return Ok(Expr::Binary(op, Box::new(left), Box::new(right)));
        }
        let negated = if self.eat_keyword("IN") {
            false
        } else if self.eat_keyword("NIN") {
            true
        } else if self.is_keyword("NOT")
            && matches!(self.peek_at(1), Tok::Ident(s) if s.eq_ignore_ascii_case("IN"))
        {
            self.bump();
            self.bump();
            true
        } else {
            return Ok(left);
        };
        let list = self.list()?;
        Ok(Expr::In {
            expr: Box::new(left),
            list,
            negated,
        })
    }

    /// `[a, b]` (or `(a, b)`): the list of `IN`.
    fn list(&mut self) -> Result<Vec<Expr>, QueryError> {
        let close = if self.eat_sym("[") {
            "]"
        } else if self.eat_sym("(") {
            ")"
        } else {
            return Err(self.unexpected("'[' starting a list"));
        };
        let mut items = Vec::new();
        if self.eat_sym(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat_sym(close) {
                return Ok(items);
            }
            self.expect_sym(",")?;
        }
    }

    fn additive(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.multiplicative()?;
        loop {
            let op = match self.peek().tok {
                Tok::Sym("+") => BinOp::Add,
                Tok::Sym("-") => BinOp::Sub,
                _ => return Ok(e),
            };
            self.bump();
            e = Expr::Binary(op, Box::new(e), Box::new(self.multiplicative()?));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.unary()?;
        loop {
            let op = match self.peek().tok {
                Tok::Sym("*") => BinOp::Mul,
                Tok::Sym("/") => BinOp::Div,
                Tok::Sym("%") => BinOp::Mod,
                _ => return Ok(e),
            };
            self.bump();
            e = Expr::Binary(op, Box::new(e), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.eat_sym("-") {
            if let Tok::Num(n) = &self.peek().tok {
                let negated = negate(n);
                self.bump();
                return Ok(Expr::Literal(negated));
            }
            self.enter()?;
            let e = self.unary();
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(e?)));
        }
        if self.eat_sym("+") {
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Num(n) => {
                self.bump();
                Ok(Expr::Literal(Value::Number(n)))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Literal(Value::String(s)))
            }
            Tok::Sym("(") => {
                self.bump();
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("[") => Ok(Expr::Array(self.list()?)),
            Tok::Ident(name) => {
                let literal = match name.to_ascii_lowercase().as_str() {
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    "null" => Some(Value::Null),
                    _ => None,
                };
                if let Some(v) = literal {
                    self.bump();
                    return Ok(Expr::Literal(v));
                }
                if matches!(self.peek_at(1), Tok::Sym("(")) {
                    return self.call();
                }
                self.path()
            }
            _ => Err(self.unexpected("an expression")),
        }
    }

    /// `NAME(args…)`: a built-in function.
    fn call(&mut self) -> Result<Expr, QueryError> {
        let pos = self.peek().pos;
        let name = match self.bump().tok {
            Tok::Ident(s) => s,
            _ => return Err(self.error_at(pos, "Expected a function name")),
        };
        let Some((func, min, max)) = functions::lookup(&name, self.dialect) else {
            let upper = name.to_ascii_uppercase();
            return Err(if AGGREGATES.contains(&upper.as_str()) {
                self.error_at(
                    pos,
                    format!("The aggregate function {upper} may only be a SELECT item"),
                )
            } else {
                self.error_at(pos, format!("Unknown function '{name}'"))
            });
        };
        self.expect_sym("(")?;
        let mut args = Vec::new();
        if !self.eat_sym(")") {
            loop {
                args.push(self.expr()?);
                if self.eat_sym(")") {
                    break;
                }
                self.expect_sym(",")?;
            }
        }
        if args.len() < min || args.len() > max {
            let wanted = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(self.error_at(
                pos,
                format!(
                    "The function {} takes {wanted} argument(s), not {}",
                    name.to_ascii_uppercase(),
                    args.len()
                ),
            ));
        }
        Ok(Expr::Call(func, args))
    }

    /// `a.b['c'][0]`.
    pub(crate) fn path(&mut self) -> Result<Expr, QueryError> {
        let mut segments = vec![Segment::Key(self.name()?)];
        loop {
            if self.eat_sym(".") {
                match self.peek().tok.clone() {
                    Tok::Ident(s) => {
                        self.bump();
                        segments.push(Segment::Key(s));
                    }
                    _ => return Err(self.unexpected("a property name after '.'")),
                }
            } else if self.eat_sym("[") {
                match self.peek().tok.clone() {
                    Tok::Str(s) => segments.push(Segment::Key(s)),
                    Tok::Num(n) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
                        Some(i) => segments.push(Segment::Index(i)),
                        None => return Err(self.error("An array index must be a whole number")),
                    },
                    _ => return Err(self.unexpected("a property name or an index")),
                }
                self.bump();
                self.expect_sym("]")?;
            } else {
                return Ok(Expr::Path(segments));
            }
        }
    }
}

fn negate(n: &serde_json::Number) -> Value {
    if let Some(i) = n.as_i64().and_then(i64::checked_neg) {
        return Value::from(i);
    }
    n.as_f64()
        .and_then(|f| serde_json::Number::from_f64(-f))
        .map_or(Value::Null, Value::Number)
}
