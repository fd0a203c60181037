//! What every rule run shares, whatever the rule's kind: the context it runs in, what became of
//! each image ([`ImageState`]), the tally, and the one wrapper ([`Tally::within`]) that puts a
//! run under its time limit and turns the tally into a [`RuleRun`].
//!
//! Shared by the daemon's schedule, registry notifications and `crossdock sync`, so every path
//! applies a rule the same way. A run holds no per-image record beyond a bounded list of
//! failures: outcomes are folded into counts as they come, and whoever wants each one (`sync`
//! prints them) watches them go by ([`RunContext::observer`]). That keeps a run's memory flat
//! in the number of tags.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use crate::copy::Engine;
use crate::registry::Transport;
use crate::registry::connect::Connector;

/// Failed or skipped images a run keeps with their reasons; past this they are only counted.
pub const FAILURES_KEPT: usize = 100;

/// Sees every image outcome of every run as it comes: `(rule name, outcome)`.
pub type Observer = Arc<dyn Fn(&str, &ImageOutcome) + Send + Sync>;

/// What a rule run needs besides the rule.
#[derive(Clone)]
pub struct RunContext {
    /// The engine shared by every rule of the process.
    pub engine: Engine,
    /// Transports shared by every rule of the process.
    pub connector: Arc<Connector>,
    /// Images copied at once within one rule.
    pub image_concurrency: usize,
    /// `ratelimit-remaining` floor per registry: stop pulling from it below this.
    pub ratelimit_reserve: Arc<dyn Fn(&str) -> u32 + Send + Sync>,
    /// Called with each image's outcome as it is known (`None`: nobody watches).
    pub observer: Option<Observer>,
    /// What the daemon confirmed at targets in earlier runs (`None`: no memory, as in
    /// `crossdock sync`; see [`super::confirmed`]).
    pub confirmed: Option<Arc<super::Confirmed>>,
}

impl RunContext {
    /// Whether pulling from `registry` (through `transport`) must stop: its pull budget is
    /// under the reserve configured for it.
    pub fn reserve_reached(&self, registry: &str, transport: &dyn Transport) -> Option<Reserve> {
        let reserve = (self.ratelimit_reserve)(registry);
        let left = transport.ratelimit_remaining()?;
        (reserve > 0 && left < i64::from(reserve)).then(|| Reserve {
            registry: registry.to_string(),
            left,
            reserve,
        })
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// Everything copied or already up to date.
    Ok,
    /// Some image or source failed.
    Failed,
    /// The rule's time limit passed.
    Timeout,
}

impl RunResult {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Failed => "failed",
            RunResult::Timeout => "timeout",
        }
    }
}

/// A registry's pull budget under the configured reserve: the image is not pulled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserve {
    /// The source registry.
    pub registry: String,
    /// Pulls it says are left.
    pub left: i64,
    /// The `ratelimit_reserve` configured for it.
    pub reserve: u32,
}

impl fmt::Display for Reserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} pulls left, under the reserve of {}: not pulling",
            self.registry, self.left, self.reserve
        )
    }
}

/// Why an image failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No transport for a registry (unreadable CA file, bad credentials file, …).
    Connect(String),
    /// The copy (or, for an index rule, checking or composing the index) failed.
    Copy(String),
    /// The copy failed for this target only (the engine's report).
    Target(String),
    /// The copy ended before it reached this target.
    NotReached,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) | Failure::Copy(e) | Failure::Target(e) => f.write_str(e),
            Failure::NotReached => f.write_str("the copy ended before reaching this target"),
        }
    }
}

/// What became of one image at one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageState {
    /// Written.
    Copied,
    /// Already there.
    UpToDate,
    /// The target tag points at another image and the rule keeps it (`on_conflict = "keep"`).
    Kept,
    /// A dry run found it would be written.
    WouldCopy,
    /// Not tried: the source registry's rate-limit reserve was reached.
    Skipped(Reserve),
    /// Not copied: the rule's signature policy found no valid signature (see [`crate::trust`]).
    Refused(String),
    /// Failed, and why.
    Failed(Failure),
    /// Deleted from the target: its source tag is gone and the rule prunes (see
    /// [`super::prune`]). The digest is the image the tag pointed at.
    Pruned,
    /// A dry run found it would be deleted.
    WouldPrune,
    /// Would be pruned, but could not be removed alone: the registry deletes by digest only and
    /// a kept tag points at the same image. Not a failure of the run.
    NotPruned(String),
    /// A dry run found a kept tag on the same image: it would be pruned only where the registry
    /// deletes tags by name, and would stay (as [`ImageState::NotPruned`]) where it deletes by
    /// digest only. Which one the target is, only a DELETE tells (a target that knows it
    /// deletes tags alone, an OCI layout, says [`ImageState::WouldPrune`] instead).
    WouldPruneByTagOnly(String),
    /// An immutable tag the target lists already: left as it is, neither side asked (issue 18;
    /// whether it is the source's image is not known, and for an immutable tag not asked).
    Present,
}

/// The kinds of [`ImageState`], for counts and labels.
const KINDS: [&str; 12] = [
    "copied",
    "up_to_date",
    "kept",
    "dry_run",
    "skipped",
    "failed",
    "refused",
    "pruned",
    "would_prune",
    "not_pruned",
    "present",
    "would_prune_by_tag",
];

/// The words for the kinds of [`ImageState`] in text meant for people, in [`KINDS`]' order.
const WORDS: [&str; 12] = [
    "copied",
    "up to date",
    "kept",
    "would copy",
    "skipped",
    "failed",
    "refused",
    "pruned",
    "would prune",
    "not pruned",
    "present",
    "by tag only",
];

impl ImageState {
    /// The label in JSON reports and metrics: `copied`, `up_to_date`, `kept`, `dry_run`,
    /// `skipped`, `failed`, `refused`, `pruned`, `would_prune`, `not_pruned`, `present`,
    /// `would_prune_by_tag`.
    pub fn label(&self) -> &'static str {
        KINDS[self.kind()]
    }

    /// The word for it in text meant for people (`crossdock sync`'s report): `copied`,
    /// `up to date`, `kept`, `would copy`, `skipped`, `failed`, `refused`, `pruned`,
    /// `would prune`, `not pruned`, `present`, `by tag only`.
    pub fn display_word(&self) -> &'static str {
        WORDS[self.kind()]
    }

    fn kind(&self) -> usize {
        match self {
            ImageState::Copied => 0,
            ImageState::UpToDate => 1,
            ImageState::Kept => 2,
            ImageState::WouldCopy => 3,
            ImageState::Skipped(_) => 4,
            ImageState::Failed(_) => 5,
            ImageState::Refused(_) => 6,
            ImageState::Pruned => 7,
            ImageState::WouldPrune => 8,
            ImageState::NotPruned(_) => 9,
            ImageState::Present => 10,
            ImageState::WouldPruneByTagOnly(_) => 11,
        }
    }

    /// Whether this is what pruning did (or would do) to a target tag, not a copy's outcome.
    pub fn is_prune(&self) -> bool {
        matches!(
            self,
            ImageState::Pruned
                | ImageState::WouldPrune
                | ImageState::NotPruned(_)
                | ImageState::WouldPruneByTagOnly(_)
        )
    }

    /// Why the image failed, was skipped or refused, or its tag could not be pruned alone.
    pub fn reason(&self) -> Option<String> {
        match self {
            ImageState::Skipped(r) => Some(r.to_string()),
            ImageState::Refused(r)
            | ImageState::NotPruned(r)
            | ImageState::WouldPruneByTagOnly(r) => Some(r.clone()),
            ImageState::Failed(f) => Some(f.to_string()),
            _ => None,
        }
    }
}

/// One image's outcome within a run.
#[derive(Debug, Clone)]
pub struct ImageOutcome {
    /// Source reference.
    pub source: String,
    /// Target reference.
    pub target: String,
    /// What became of it.
    pub state: ImageState,
    /// The digest written (or that would be, or that a kept tag points at).
    pub digest: Option<String>,
    /// Bytes streamed.
    pub bytes_copied: u64,
}

impl Serialize for ImageOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            source: &'a str,
            target: &'a str,
            state: &'static str,
            digest: Option<&'a str>,
            bytes_copied: u64,
            error: Option<String>,
        }
        Wire {
            source: &self.source,
            target: &self.target,
            state: self.state.label(),
            digest: self.digest.as_deref(),
            bytes_copied: self.bytes_copied,
            error: self.state.reason(),
        }
        .serialize(s)
    }
}

/// Images of a run by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Written.
    pub copied: u64,
    /// Already there.
    pub up_to_date: u64,
    /// Target tag kept at another image.
    pub kept: u64,
    /// Would be written (dry run).
    pub would_copy: u64,
    /// Not tried (rate-limit reserve).
    pub skipped: u64,
    /// Failed.
    pub failed: u64,
    /// Refused by the signature policy.
    pub refused: u64,
    /// Target tags deleted because their source tag is gone.
    pub pruned: u64,
    /// Target tags a dry run would delete.
    pub would_prune: u64,
    /// Target tags that could not be deleted alone (digest-only registries).
    pub not_pruned: u64,
    /// Immutable tags the target lists already.
    pub present: u64,
    /// Target tags a dry run would delete only where the registry deletes tags by name.
    pub would_prune_by_tag: u64,
}

impl Counts {
    fn slot(&mut self, kind: usize) -> &mut u64 {
        match kind {
            0 => &mut self.copied,
            1 => &mut self.up_to_date,
            2 => &mut self.kept,
            3 => &mut self.would_copy,
            4 => &mut self.skipped,
            5 => &mut self.failed,
            6 => &mut self.refused,
            7 => &mut self.pruned,
            8 => &mut self.would_prune,
            9 => &mut self.not_pruned,
            10 => &mut self.present,
            _ => &mut self.would_prune_by_tag,
        }
    }

    /// Counts one image.
    pub fn add(&mut self, state: &ImageState) {
        *self.slot(state.kind()) += 1;
    }

    /// Every image counted (pruned tags are not images copied or tried).
    pub fn total(&self) -> u64 {
        self.copied
            + self.up_to_date
            + self.kept
            + self.would_copy
            + self.skipped
            + self.failed
            + self.refused
            + self.present
    }

    /// Both runs' images.
    pub fn merge(&mut self, other: &Counts) {
        for (k, n) in other.by_label().enumerate() {
            *self.slot(k) += n.1;
        }
    }

    /// `(label, count)` for each state, labels as [`ImageState::label`] gives them.
    pub fn by_label(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let c = *self;
        (0..KINDS.len()).map(move |k| (KINDS[k], *{ c }.slot(k)))
    }
}

/// A problem of a run outside any one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// A source repository's transport could not be built.
    Connect {
        /// The source repository.
        source: String,
        /// Why.
        error: String,
    },
    /// A source's tags could not be listed (or a reference formed for one).
    Resolve(String),
    /// The rule's time limit passed.
    TimedOut {
        /// The rule.
        rule: String,
        /// Its time limit.
        limit: Duration,
    },
    /// A guard rail stopped pruning a target repository (see [`super::prune::Refusal`]).
    PruneRefused {
        /// The target repository.
        target: String,
        /// Why, and how many tags would have gone.
        refusal: super::prune::Refusal,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Connect { source, error } => write!(f, "{source}: {error}"),
            RunError::Resolve(e) => f.write_str(e),
            RunError::PruneRefused { target, refusal } => write!(f, "{target}: {refusal}"),
            RunError::TimedOut { rule, limit } => write!(
                f,
                "rule {rule} did not finish within its time limit of {}",
                humantime::format_duration(*limit)
            ),
        }
    }
}

impl Serialize for RunError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A finished run.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRun {
    /// The rule.
    pub rule: String,
    /// How it ended.
    pub result: RunResult,
    /// Whether it was a dry run (nothing written).
    pub dry_run: bool,
    /// Wall time.
    pub seconds: f64,
    /// Images by state.
    pub counts: Counts,
    /// The first [`FAILURES_KEPT`] failed or skipped images, with their reasons.
    pub failures: Vec<ImageOutcome>,
    /// Problems outside any one image (listing tags, connecting, the time limit).
    pub errors: Vec<RunError>,
    /// The first [`FAILURES_KEPT`] target tags pruned (or that would be, or could not be alone).
    pub pruned: Vec<ImageOutcome>,
}

impl RuleRun {
    /// Each problem of the run, in words: run-level errors first, then failed images.
    pub fn problems(&self) -> impl Iterator<Item = String> + '_ {
        self.errors
            .iter()
            .map(ToString::to_string)
            .chain(self.image_problems())
    }

    /// Each failed or skipped image, in words (the run-level errors are on the summary line).
    pub fn image_problems(&self) -> impl Iterator<Item = String> + '_ {
        self.failures
            .iter()
            .filter_map(|i| Some(format!("{}: {}", i.target, i.state.reason()?)))
    }

    /// Two runs of one rule as one: everything they did, the worse result.
    pub fn merge(mut self, other: RuleRun) -> RuleRun {
        let rank = |r: RunResult| match r {
            RunResult::Ok => 0,
            RunResult::Failed => 1,
            RunResult::Timeout => 2,
        };
        if rank(other.result) > rank(self.result) {
            self.result = other.result;
        }
        self.seconds += other.seconds;
        self.counts.merge(&other.counts);
        let room = FAILURES_KEPT.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
        self.errors.extend(other.errors);
        let room = FAILURES_KEPT.saturating_sub(self.pruned.len());
        self.pruned.extend(other.pruned.into_iter().take(room));
        self
    }
}

/// A run's outcomes as they come, folded: what every kind of rule records through.
pub struct Tally {
    rule: String,
    dry_run: bool,
    observer: Option<Observer>,
    // A std mutex, held only to add a number or push to a bounded list.
    inner: Mutex<(Counts, Vec<ImageOutcome>, Vec<RunError>)>,
    pruned: Mutex<Vec<ImageOutcome>>,
}

impl Tally {
    /// An empty tally for a run of `rule`.
    pub fn new(rule: &str, dry_run: bool, ctx: &RunContext) -> Tally {
        Tally {
            rule: rule.to_string(),
            dry_run,
            observer: ctx.observer.clone(),
            inner: Mutex::new(Default::default()),
            pruned: Mutex::default(),
        }
    }

    /// Records one image's outcome.
    pub fn image(&self, outcome: ImageOutcome) {
        if let Some(o) = &self.observer {
            o(&self.rule, &outcome);
        }
        let mut inner = self.inner.lock().expect("tally lock");
        inner.0.add(&outcome.state);
        if outcome.state.is_prune() {
            let mut pruned = self.pruned.lock().expect("tally lock");
            if pruned.len() < FAILURES_KEPT {
                pruned.push(outcome);
            }
            return;
        }
        let failed = matches!(
            outcome.state,
            ImageState::Failed(_) | ImageState::Skipped(_) | ImageState::Refused(_)
        );
        if failed && inner.1.len() < FAILURES_KEPT {
            inner.1.push(outcome);
        }
    }

    /// Records a problem outside any one image.
    pub fn error(&self, error: RunError) {
        self.inner.lock().expect("tally lock").2.push(error);
    }

    /// What failed so far: failed or refused images plus problems outside any image (what
    /// stops pruning).
    pub fn failed_so_far(&self) -> usize {
        let inner = self.inner.lock().expect("tally lock");
        (inner.0.failed + inner.0.refused) as usize + inner.2.len()
    }

    /// Runs `work` (which records into this tally) within `limit`, then makes the run: timed
    /// out when the limit passed (images in flight then are not counted), failed when any
    /// image or anything outside one failed, else ok.
    pub async fn within(&self, limit: Duration, work: impl Future<Output = ()>) -> RuleRun {
        let started = Instant::now();
        let timed_out = tokio::time::timeout(limit, work).await.is_err();
        let (counts, failures, mut errors) =
            std::mem::take(&mut *self.inner.lock().expect("tally lock"));
        let result = if timed_out {
            errors.push(RunError::TimedOut {
                rule: self.rule.clone(),
                limit,
            });
            RunResult::Timeout
        } else if errors.is_empty() && counts.failed == 0 && counts.refused == 0 {
            RunResult::Ok
        } else {
            RunResult::Failed
        };
        RuleRun {
            rule: self.rule.clone(),
            result,
            dry_run: self.dry_run,
            seconds: started.elapsed().as_secs_f64(),
            counts,
            failures,
            errors,
            pruned: std::mem::take(&mut *self.pruned.lock().expect("tally lock")),
        }
    }
}
