//! Progress output: bars on a terminal (indicatif), plain lines otherwise, nothing for `--json`.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::copy::{BlobOutcome, Progress};
use crate::digest::Digest;

/// How progress is shown.
pub(super) enum Bars {
    /// A byte bar on stderr.
    Terminal(ProgressBar),
    /// A line per blob on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

/// Progress for the current stderr: bars on a terminal, lines otherwise; `Quiet` when not `show`.
pub(super) fn for_terminal(show: bool) -> Arc<Bars> {
    if !show {
        return Arc::new(Bars::Quiet);
    }
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("static template"),
        );
        Arc::new(Bars::Terminal(bar))
    } else {
        Arc::new(Bars::Lines)
    }
}

impl Bars {
    /// Clears the bar.
    pub(super) fn finish(&self) {
        if let Bars::Terminal(b) = self {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn target_started(&self, target: &str, blobs: usize, bytes: u64) {
        match self {
            Bars::Terminal(b) => {
                b.inc_length(bytes);
                b.set_message(target.to_string());
            }
            Bars::Lines => eprintln!("{target}: {blobs} blob(s), {}", human_bytes(bytes)),
            Bars::Quiet => {}
        }
    }

    fn bytes(&self, n: u64) {
        if let Bars::Terminal(b) = self {
            b.inc(n);
        }
    }

    fn blob_done(&self, target: &str, digest: &Digest, size: u64, outcome: BlobOutcome) {
        match self {
            Bars::Terminal(b) => {
                // Bytes not streamed still count as done.
                if !matches!(outcome, BlobOutcome::Copied) {
                    b.inc(size);
                }
            }
            Bars::Lines => {
                let what = match outcome {
                    BlobOutcome::Copied => "copied",
                    BlobOutcome::Skipped => "present",
                    BlobOutcome::Mounted => "mounted",
                    BlobOutcome::WouldCopy => "would copy",
                    BlobOutcome::WouldMount => "would mount",
                };
                eprintln!(
                    "{target}: {what} {} ({})",
                    digest.short(),
                    human_bytes(size)
                );
            }
            Bars::Quiet => {}
        }
    }
}

/// Bytes in binary units, e.g. `16.0 MiB`.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes() {
        assert_eq!(super::human_bytes(0), "0 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(16 * 1024 * 1024), "16.0 MiB");
    }
}
