//! Transfer progress on stderr.
//!
//! A first mirror of a large repository can take minutes, and a CodeBuild log that says nothing
//! for minutes looks hung. On a terminal we redraw one line; anywhere else (CodeBuild, CI) we
//! print a plain line at a steady interval so logs stay short but never silent.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProgressMode {
    /// A bar on a terminal, periodic lines otherwise.
    Auto,
    /// Periodic plain lines even on a terminal.
    Plain,
    /// No progress output.
    Never,
}

/// How every transfer of a run shows its progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProgressOptions {
    pub(crate) mode: ProgressMode,
    /// Between plain lines.
    pub(crate) interval: Duration,
}

pub(crate) struct Progress {
    phase: &'static str,
    style: Style,
    interval: Duration,
    last: Option<Instant>,
    drew_bar: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Bar,
    Lines,
    Silent,
}

impl Progress {
    pub(crate) fn new(phase: &'static str, options: ProgressOptions) -> Progress {
        let style = match options.mode {
            ProgressMode::Never => Style::Silent,
            ProgressMode::Plain => Style::Lines,
            ProgressMode::Auto if std::io::stderr().is_terminal() => Style::Bar,
            ProgressMode::Auto => Style::Lines,
        };
        Progress {
            phase,
            style,
            interval: options.interval,
            last: None,
            drew_bar: false,
        }
    }

    /// Report `done` of `total` objects and `bytes` moved so far. Cheap to call often.
    pub(crate) fn update(&mut self, done: usize, total: usize, bytes: usize) {
        let now = Instant::now();
        let due = match (self.style, self.last) {
            (Style::Silent, _) => false,
            (Style::Bar, Some(last)) => now.duration_since(last) >= Duration::from_millis(100),
            (Style::Lines, Some(last)) => now.duration_since(last) >= self.interval,
            // The first line waits one interval too, so quick transfers print nothing.
            (Style::Lines, None) => {
                self.last = Some(now);
                false
            }
            (Style::Bar, None) => true,
        };
        if !due {
            return;
        }
        self.last = Some(now);
        let text = describe(self.phase, done, total, bytes);
        let mut err = std::io::stderr().lock();
        if self.style == Style::Bar {
            let _ = write!(err, "\r\x1b[2K{text}");
            self.drew_bar = true;
        } else {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
    }

    /// Clear the bar so the next log line starts on a clean line.
    pub(crate) fn finish(&mut self) {
        if self.drew_bar {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.drew_bar = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn describe(phase: &str, done: usize, total: usize, bytes: usize) -> String {
    let size = human_bytes(bytes as u64);
    if let Some(pct) = done.saturating_mul(100).checked_div(total) {
        format!("{phase}: {pct}% ({done}/{total} objects), {size}")
    } else {
        format!("{phase}: {done} objects, {size}")
    }
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_with_and_without_total() {
        assert_eq!(
            describe("fetch", 50, 200, 3 * 1024 * 1024),
            "fetch: 25% (50/200 objects), 3.0 MiB"
        );
        assert_eq!(describe("push", 7, 0, 10), "push: 7 objects, 10 B");
    }
}
