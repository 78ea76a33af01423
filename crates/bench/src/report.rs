//! The figures of a run of rounds and the cells of the table printed at its end: each figure
//! a measure, a column (a server, a transport), a round and a value; a cell holds every
//! round's value and their median, a ratio cell the ratio of two medians and the ratios round
//! by round.

use crate::stats::median;

/// The figures of a run and the parts of it that failed; `round` is the one being measured.
#[derive(Default)]
pub struct Results {
    pub round: usize,
    figures: Vec<(&'static str, &'static str, usize, f64)>,
    failures: Vec<String>,
}

impl Results {
    /// A new run: prints the machine's load average at its start.
    pub fn start() -> Self {
        #[allow(clippy::print_stdout)]
        {
            println!(
                "load average (1, 5, 15 min) at the start: {}",
                crate::stats::load_average()
            );
        }
        Self::default()
    }

    /// Records (and prints) a part of the run that failed; the run goes on, since the other
    /// figures of the same run are still worth having.
    pub fn failed(&mut self, e: &anyhow::Error) {
        #[allow(clippy::print_stdout)]
        {
            println!("  FAILED: {e:#}");
        }
        self.failures.push(format!("{e:#}"));
    }

    /// After the table: the failures again and the load average at the end; an error naming
    /// how many of the run's `parts` failed, if any did.
    #[allow(clippy::print_stdout)]
    pub fn finish(&self, parts: &str) -> anyhow::Result<()> {
        for f in &self.failures {
            println!("failed: {f}");
        }
        println!(
            "load average (1, 5, 15 min) at the end: {}",
            crate::stats::load_average()
        );
        if !self.failures.is_empty() {
            anyhow::bail!("{} of the {parts} failed", self.failures.len());
        }
        Ok(())
    }

    /// Records (and prints) `value` of `measure` for `column` in the current round.
    pub fn add(&mut self, measure: &'static str, column: &'static str, value: f64) {
        #[allow(clippy::print_stdout)]
        {
            println!("  {column} {measure}: {value:.2}");
        }
        self.figures.push((measure, column, self.round, value));
    }

    /// A column's figures for `measure`, with their rounds.
    pub fn values(&self, measure: &str, column: &str) -> Vec<(usize, f64)> {
        self.figures
            .iter()
            .filter(|(m, c, _, _)| *m == measure && *c == column)
            .map(|(_, _, r, v)| (*r, *v))
            .collect()
    }
}

fn only(v: &[(usize, f64)]) -> Vec<f64> {
    v.iter().map(|(_, x)| *x).collect()
}

/// Every round's value and the median: `a / b / c (median)`; `–` when there is none.
pub fn rounds_cell(v: &[(usize, f64)]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let rounds: Vec<String> = v.iter().map(|(_, x)| format!("{x:.1}")).collect();
    format!("{} ({:.1})", rounds.join(" / "), median(&only(v)))
}

/// `ours`' median over `theirs`', then the ratios of the rounds both have:
/// `0.50 (0.40 / 0.60)`; `–` when either has no figure.
pub fn ratio_cell(ours: &[(usize, f64)], theirs: &[(usize, f64)]) -> String {
    if ours.is_empty() || theirs.is_empty() {
        return "–".into();
    }
    let per_round: Vec<String> = ours
        .iter()
        .filter_map(|(r, a)| {
            let (_, b) = theirs.iter().find(|(rb, _)| rb == r)?;
            Some(format!("{:.2}", a / b))
        })
        .collect();
    format!(
        "{:.2} ({})",
        median(&only(ours)) / median(&only(theirs)),
        per_round.join(" / ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells() {
        let mut results = Results::default();
        for (round, (a, b)) in [(10.0, 20.0), (30.0, 30.0), (20.0, 80.0)]
            .into_iter()
            .enumerate()
        {
            results.round = round;
            results.add("m", "a", a);
            results.add("m", "b", b);
        }
        // `b` missed round 1 of another measure: ratios only where both were measured.
        results.round = 0;
        results.add("n", "a", 4.0);
        results.round = 1;
        results.add("n", "a", 6.0);
        results.add("n", "b", 3.0);

        let (a, b) = (results.values("m", "a"), results.values("m", "b"));
        assert_eq!(rounds_cell(&a), "10.0 / 30.0 / 20.0 (20.0)");
        assert_eq!(ratio_cell(&a, &b), "0.67 (0.50 / 1.00 / 0.25)");
        let (a, b) = (results.values("n", "a"), results.values("n", "b"));
        assert_eq!(ratio_cell(&a, &b), "1.67 (2.00)");
        assert_eq!(rounds_cell(&results.values("n", "c")), "–");
        assert_eq!(ratio_cell(&a, &[]), "–");
    }
}
