//! Whole queries: `SELECT [TOP n] … FROM devices|devices.modules|devices.jobs [WHERE …]
//! [GROUP BY …] [ORDER BY … [ASC|DESC]]`, parsed into a [`Query`].

use crate::QueryError;
use crate::expr::{Expr, Segment};
use crate::functions::{AGGREGATES, Dialect};
use crate::lexer::{self, Tok};
use crate::parser::Parser;

/// The collection a query reads (`FROM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// `devices`: device twins.
    Devices,
    /// `devices.modules`: module twins.
    Modules,
    /// `devices.jobs`: each device's part in a job.
    Jobs,
}

/// An aggregate function of `SELECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

/// What one `SELECT` item computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    Expr(Expr),
    /// `COUNT()`, or `SUM(x)`, `AVG(x)`, `MIN(x)`, `MAX(x)` over numbers.
    Aggregate(Aggregate, Option<Expr>),
}

/// One `SELECT` item and the name it gets in the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    pub projection: Projection,
    pub name: String,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `None` for `SELECT *`.
    pub select: Option<Vec<SelectItem>>,
    pub top: Option<u64>,
    pub collection: Collection,
    pub filter: Option<Expr>,
    pub group_by: Vec<Expr>,
    /// Each key and whether it sorts descending.
    pub order_by: Vec<(Expr, bool)>,
}

impl Query {
    /// Parses a query over twins or jobs.
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let mut p = Parser::new(text, lexer::tokenize(text)?, Dialect::Twin);
        p.expect_keyword("SELECT")?;
        let top = if p.eat_keyword("TOP") {
            match p.peek().tok.clone() {
                Tok::Num(n) if n.as_u64().is_some() => {
                    p.bump();
                    n.as_u64()
                }
                _ => return Err(p.unexpected("a whole number after TOP")),
            }
        } else {
            None
        };
        let select = if p.eat_sym("*") {
            None
        } else {
            Some(select_list(&mut p)?)
        };
        p.expect_keyword("FROM")?;
        let collection = collection(&mut p)?;
        let filter = if p.eat_keyword("WHERE") {
            Some(p.expr()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        let group_pos = p.peek().pos;
        if p.eat_keyword("GROUP") {
            p.expect_keyword("BY")?;
            loop {
                group_by.push(p.expr()?);
                if !p.eat_sym(",") {
                    break;
                }
            }
        }
        let mut order_by = Vec::new();
        if p.eat_keyword("ORDER") {
            p.expect_keyword("BY")?;
            loop {
                let key = p.expr()?;
                let desc = if p.eat_keyword("DESC") {
                    true
                } else {
                    p.eat_keyword("ASC");
                    false
                };
                order_by.push((key, desc));
                if !p.eat_sym(",") {
                    break;
                }
            }
        }
        p.expect_end()?;
        let mut filter = filter;
        if collection == Collection::Jobs
            && let Some(f) = filter.as_mut()
        {
            strip_jobs_prefix(f);
        }
        let query = Query {
            select,
            top,
            collection,
            filter,
            group_by,
            order_by,
        };
        query.check_grouping(&p, group_pos)?;
        query.check_collection(&p)?;
        Ok(query)
    }

    /// What IoT Hub allows on each collection ("Get job information" and "GROUP BY" in the
    /// query language page): `devices.jobs` takes only `SELECT *` without groups or
    /// aggregates; `GROUP BY` is for device twins only.
    fn check_collection(&self, p: &Parser<'_>) -> Result<(), QueryError> {
        match self.collection {
            Collection::Jobs if self.select.is_some() || !self.group_by.is_empty() => Err(p
                .error_at(
                    0,
                    "Queries on devices.jobs support only SELECT * (no projections, aggregates or GROUP BY)",
                )),
            Collection::Modules if !self.group_by.is_empty() => Err(p.error_at(
                0,
                "GROUP BY is supported only on devices",
            )),
            _ => Ok(()),
        }
    }

    /// With `GROUP BY`, every item that is not an aggregate must be one of the groups' keys.
    fn check_grouping(&self, p: &Parser<'_>, pos: usize) -> Result<(), QueryError> {
        if self.group_by.is_empty() {
            let mixed = self.aggregates()
                && self
                    .select
                    .iter()
                    .flatten()
                    .any(|i| matches!(i.projection, Projection::Expr(_)));
            if mixed {
                return Err(p.error_at(
                    pos,
                    "A SELECT with aggregates and other items needs a GROUP BY of those items",
                ));
            }
            return Ok(());
        }
        let Some(items) = &self.select else {
            return Err(p.error_at(pos, "SELECT * cannot be used with GROUP BY"));
        };
        for item in items {
            if let Projection::Expr(e) = &item.projection
                && !self.group_by.contains(e)
            {
                return Err(p.error_at(
                    pos,
                    format!(
                        "The SELECT item '{}' is neither an aggregate nor in GROUP BY",
                        item.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether any `SELECT` item is an aggregate.
    pub fn aggregates(&self) -> bool {
        self.select
            .iter()
            .flatten()
            .any(|i| matches!(i.projection, Projection::Aggregate(..)))
    }
}

fn collection(p: &mut Parser<'_>) -> Result<Collection, QueryError> {
    let pos = p.peek().pos;
    let first = p.name()?;
    if !first.eq_ignore_ascii_case("devices") {
        return Err(p.error_at(
            pos,
            format!(
                "Unknown collection '{first}': FROM takes devices, devices.modules or devices.jobs"
            ),
        ));
    }
    if !p.eat_sym(".") {
        return Ok(Collection::Devices);
    }
    let pos = p.peek().pos;
    let second = p.name()?;
    if second.eq_ignore_ascii_case("modules") {
        Ok(Collection::Modules)
    } else if second.eq_ignore_ascii_case("jobs") {
        Ok(Collection::Jobs)
    } else {
        Err(p.error_at(
            pos,
            format!("Unknown collection 'devices.{second}': FROM takes devices, devices.modules or devices.jobs"),
        ))
    }
}

fn select_list(p: &mut Parser<'_>) -> Result<Vec<SelectItem>, QueryError> {
    let mut items: Vec<SelectItem> = Vec::new();
    loop {
        let pos = p.peek().pos;
        let projection = match (&p.peek().tok, p.peek_at(1)) {
            (Tok::Ident(name), Tok::Sym("("))
                if AGGREGATES.contains(&name.to_ascii_uppercase().as_str()) =>
            {
                aggregate(p)?
            }
            _ => Projection::Expr(p.expr()?),
        };
        let name = if p.eat_keyword("AS") {
            p.name()?
        } else {
            match &projection {
                Projection::Expr(e) => e.default_name().map(str::to_owned),
                Projection::Aggregate(..) => None,
            }
            .unwrap_or_else(|| format!("${}", items.len() + 1))
        };
        if items.iter().any(|i| i.name == name) {
            return Err(p.error_at(pos, format!("Two SELECT items are named '{name}'")));
        }
        items.push(SelectItem { projection, name });
        if !p.eat_sym(",") {
            return Ok(items);
        }
    }
}

fn aggregate(p: &mut Parser<'_>) -> Result<Projection, QueryError> {
    let pos = p.peek().pos;
    let name = match p.bump().tok {
        Tok::Ident(s) => s.to_ascii_uppercase(),
        _ => return Err(p.error_at(pos, "Expected an aggregate function")),
    };
    p.expect_sym("(")?;
    let function = match name.as_str() {
        "COUNT" => Aggregate::Count,
        "SUM" => Aggregate::Sum,
        "AVG" => Aggregate::Avg,
        "MIN" => Aggregate::Min,
        _ => Aggregate::Max,
    };
    if function == Aggregate::Count {
        p.expect_sym(")")?;
        return Ok(Projection::Aggregate(function, None));
    }
    let arg = p.expr()?;
    p.expect_sym(")")?;
    Ok(Projection::Aggregate(function, Some(arg)))
}

/// `devices.jobs.jobId` names a device job's `jobId`, as IoT Hub's examples write it
/// (`SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'x'`): the collection's prefix
/// is dropped from every path of a `devices.jobs` filter.
fn strip_jobs_prefix(expr: &mut Expr) {
    match expr {
        Expr::Path(segments) => {
            let prefixed = matches!(
                segments.as_slice(),
                [Segment::Key(a), Segment::Key(b), _, ..]
                    if a.eq_ignore_ascii_case("devices") && b.eq_ignore_ascii_case("jobs")
            );
            if prefixed {
                segments.drain(..2);
            }
        }
        Expr::Literal(_) => {}
        Expr::Array(items) | Expr::Call(_, items) => items.iter_mut().for_each(strip_jobs_prefix),
        Expr::Not(inner) | Expr::Neg(inner) => strip_jobs_prefix(inner),
        Expr::Binary(_, left, right) => {
            strip_jobs_prefix(left);
            strip_jobs_prefix(right);
        }
        Expr::In { expr, list, .. } => {
            strip_jobs_prefix(expr);
            list.iter_mut().for_each(strip_jobs_prefix);
        }
    }
}
