//! Retries of a one-shot command as one progress line instead of log lines.
//!
//! The transport's retry loop logs each retry at WARN (`crossdock::registry::retry`), which is
//! right for the daemon, whose log is its record. A person running `crossdock import` or
//! `inspect` at a terminal only needs to know that crossdock is waiting and why; the final
//! error (printed once, with a hint) says the rest. So for one-shot commands at the default log
//! level this layer takes those events instead of the log: at a terminal it redraws a single
//! line, erased when the command gives up; elsewhere (a pipe, a CI log) it prints
//! the first retry once. An explicit `--log-level` or `RUST_LOG` brings the log lines back.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The log target of the retry loop.
pub(super) const RETRY_TARGET: &str = "crossdock::registry::retry";

/// The layer; see the module documentation.
pub(super) struct RetryLine {
    terminal: bool,
    shown: AtomicBool,
}

impl RetryLine {
    /// A line on stderr, redrawn when `terminal`.
    pub(super) fn new(terminal: bool) -> Self {
        RetryLine {
            terminal,
            shown: AtomicBool::new(false),
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    op: String,
    attempt: String,
    error: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let slot = match field.name() {
            "message" => &mut self.message,
            "op" => &mut self.op,
            "attempt" => &mut self.attempt,
            "error" => &mut self.error,
            _ => return,
        };
        let _ = write!(slot, "{value:?}");
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "op" {
            self.op = value.to_string();
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// The innermost cause of a retried error's text: what a person needs on one line.
fn last_cause(error: &str) -> &str {
    error.rsplit(": ").next().unwrap_or(error)
}

/// The request of a retried error's text (`HEAD manifest http://…`), without its class.
fn request(error: &str) -> &str {
    let first = error.split(": ").next().unwrap_or(error);
    first.split(" (").next().unwrap_or(first)
}

impl<S: Subscriber> Layer<S> for RetryLine {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != RETRY_TARGET || *meta.level() > Level::WARN {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let mut err = std::io::stderr().lock();
        // At a terminal the line is redrawn in place (cursor up one line, clear it), and erased
        // on giving up, where the error takes its place.
        let shown_before = self.shown.load(Ordering::Relaxed);
        if f.message.starts_with("giving up") {
            if self.terminal && shown_before {
                let _ = write!(err, "\x1b[1A\r\x1b[2K");
                self.shown.store(false, Ordering::Relaxed);
            }
            return;
        }
        let what = match request(&f.error) {
            "" => f.op.as_str(),
            r => r,
        };
        let line = format!(
            "retrying {what} (attempt {}): {}",
            f.attempt,
            last_cause(&f.error)
        );
        if self.terminal {
            let up = if shown_before { "\x1b[1A\r\x1b[2K" } else { "" };
            let _ = writeln!(err, "{up}{line}");
            self.shown.store(true, Ordering::Relaxed);
        } else if !self.shown.swap(true, Ordering::Relaxed) {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_cause_is_shown() {
        assert_eq!(
            last_cause(
                "HEAD manifest http://h/v2/x (transport): tcp connect error: Connection refused (os error 111)"
            ),
            "Connection refused (os error 111)"
        );
        assert_eq!(last_cause("timed out"), "timed out");
        assert_eq!(
            request("HEAD manifest http://h/v2/x (transport): refused"),
            "HEAD manifest http://h/v2/x"
        );
    }
}
