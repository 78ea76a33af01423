//! Live progress on standard error: a line refreshed in place on a terminal, a plain line
//! every few seconds otherwise (a log, a pipe, CI).

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::stats::{Stats, get};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A refreshing line on a terminal, periodic lines otherwise.
    Auto,
    /// Nothing.
    Off,
}

/// One progress line.
pub fn line(stats: &Stats, devices: usize, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let sent = get(&stats.sent);
    let errors: u64 = stats.errors().values().sum();
    format!(
        "{:>6.1}s  connected {}/{}  sent {} ({:.0}/s)  acked {}  in stream {}  twin {}  c2d {}  methods {}  errors {}",
        elapsed.as_secs_f64(),
        get(&stats.connected),
        devices,
        sent,
        sent as f64 / secs,
        get(&stats.acknowledged),
        get(&stats.in_stream),
        get(&stats.twin_accepted),
        get(&stats.c2d_received),
        get(&stats.methods_answered),
        errors,
    )
}

/// Shows progress until `stop` turns true.
pub async fn show(
    mode: Progress,
    stats: Arc<Stats>,
    devices: usize,
    started: Instant,
    mut stop: watch::Receiver<bool>,
) {
    if mode == Progress::Off {
        return;
    }
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    if tty {
                        let _ = writeln!(std::io::stderr());
                    }
                    return;
                }
            }
        }
        let text = line(&stats, devices, started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r\x1b[2K{text}")
        } else {
            writeln!(err, "{text}")
        };
        let _ = err.flush();
    }
}
