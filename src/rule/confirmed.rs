//! What the daemon last confirmed at each target tag (issue 18, item 2), so that a moving tag
//! whose source still resolves to that digest costs the source HEAD alone: the target HEAD is
//! skipped.
//!
//! Trusting a memory means missing what changed behind the daemon's back (someone pushed to
//! the target, or deleted there). So an entry is used only until the rule's `full_check`
//! schedule fires after the target was last asked (HEADed or written); then the tag is checked
//! at both sides again and the entry renewed. The memory is in the process only: after a
//! restart every tag is checked at both sides, and `crossdock sync` has none at all.
//!
//! Bounded and flat in the number of tags: an entry is a 16-byte key (the first half of the
//! SHA-256 of rule, target repository and tag), the 32-byte digest and the 4-byte time of the
//! last full check — about 53 bytes with the table's overhead, whatever the names' lengths. At
//! most [`MAX_ENTRIES`] are kept (≈ 7 MiB at most); a new entry that would pass that forgets
//! the older half first, by time of last full check. Forgetting is always safe: a tag that is
//! not remembered is checked at both sides, as it would be without a memory. Only sha256
//! digests are remembered (what registries use); any other is checked every time.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use super::mirror::RulePlan;
use super::run::{ImageOutcome, ImageState, RunContext};
use crate::digest::{Algorithm, Digest};
use crate::reference::Reference;
use crate::schedule::Schedule;

/// Most entries kept: 114,688 is what a table of 131,072 slots holds before it grows.
pub const MAX_ENTRIES: usize = 114_688;

/// Rule, target repository and tag, hashed.
type Key = [u8; 16];

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The sha256 digest the target tag was confirmed at.
    digest: [u8; 32],
    /// When the target was last asked (or written), in seconds after [`Confirmed::base`].
    checked: u32,
}

/// The daemon's memory of what each target tag was confirmed at. Shared by every rule of the
/// process (keys include the rule's name) and across reloads.
#[derive(Debug)]
pub struct Confirmed {
    base: DateTime<Utc>,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Default for Confirmed {
    fn default() -> Self {
        Confirmed {
            base: Utc::now(),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

fn key(rule: &str, target: &Reference) -> Key {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    h.update([0]);
    h.update(target.to_string().as_bytes());
    let full = h.finalize();
    let mut k = [0; 16];
    k.copy_from_slice(&full[..16]);
    k
}

fn raw(digest: &Digest) -> Option<[u8; 32]> {
    if digest.algorithm() != Algorithm::Sha256 {
        return None;
    }
    let mut out = [0; 32];
    hex::decode_to_slice(digest.hex(), &mut out).ok()?;
    Some(out)
}

impl Confirmed {
    /// How many target tags are remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("confirmed lock").len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn seconds(&self, t: DateTime<Utc>) -> u32 {
        (t - self.base).num_seconds().clamp(0, i64::from(u32::MAX)) as u32
    }

    /// The digest `target` (a tagged reference) of `rule` was last confirmed at, unless
    /// `full_check` has fired since the target was last asked (by `now`): then `None`, and the
    /// target is asked again.
    pub fn known(
        &self,
        rule: &str,
        target: &Reference,
        full_check: &Schedule,
        now: DateTime<Utc>,
    ) -> Option<Digest> {
        let entry = *self
            .entries
            .lock()
            .expect("confirmed lock")
            .get(&key(rule, target))?;
        let checked = self.base + chrono::Duration::seconds(i64::from(entry.checked));
        if full_check.next_after(checked).is_some_and(|due| due <= now) {
            return None;
        }
        Digest::parse(&format!("sha256:{}", hex::encode(entry.digest))).ok()
    }

    /// Remembers that `target` of `rule` was asked (or written) at `now` and holds `digest`.
    pub fn confirm(&self, rule: &str, target: &Reference, digest: &Digest, now: DateTime<Utc>) {
        let k = key(rule, target);
        let Some(digest) = raw(digest) else {
            self.forget(rule, target);
            return;
        };
        let entry = Entry {
            digest,
            checked: self.seconds(now),
        };
        let mut entries = self.entries.lock().expect("confirmed lock");
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&k) {
            forget_older_half(&mut entries);
        }
        entries.insert(k, entry);
    }

    /// Forgets `target` of `rule`: its next run asks the target again.
    pub fn forget(&self, rule: &str, target: &Reference) {
        self.entries
            .lock()
            .expect("confirmed lock")
            .remove(&key(rule, target));
    }
}

/// One run's view of the memory: a rule's name, its full-check schedule, and when the run
/// started.
pub(crate) struct RunMemory<'a> {
    store: &'a Confirmed,
    rule: &'a str,
    full_check: &'a Schedule,
    now: DateTime<Utc>,
}

impl<'a> RunMemory<'a> {
    /// The memory a run of `rule` uses: none for a dry run (it writes nothing and confirms
    /// nothing) or without a memory in the context (`crossdock sync`).
    pub(crate) fn for_run(
        ctx: &'a RunContext,
        rule: &'a RulePlan,
        dry_run: bool,
    ) -> Option<RunMemory<'a>> {
        Some(RunMemory {
            store: ctx.confirmed.as_deref().filter(|_| !dry_run)?,
            rule: &rule.name,
            full_check: &rule.full_check,
            now: Utc::now(),
        })
    }

    /// What `target` was confirmed at, unless its full check is due.
    pub(crate) fn known(&self, target: &Reference) -> Option<Digest> {
        self.store
            .known(self.rule, target, self.full_check, self.now)
    }

    /// Takes in what became of `target`, whose memory was `known` when the copy started: a
    /// digest the target was asked about or written at is remembered from now; one the memory
    /// answered keeps its time of last full check; anything else is forgotten.
    pub(crate) fn settle(&self, target: &Reference, known: Option<&Digest>, out: &ImageOutcome) {
        let at = match (&out.state, &out.digest) {
            (ImageState::Copied | ImageState::UpToDate, Some(d)) => Digest::parse(d).ok(),
            _ => None,
        };
        match at {
            Some(d) if known == Some(&d) => {}
            Some(d) => self.store.confirm(self.rule, target, &d, self.now),
            None => self.store.forget(self.rule, target),
        }
    }
}

/// Drops the entries whose last full check is not newer than the median one (at least half).
fn forget_older_half(entries: &mut HashMap<Key, Entry>) {
    let mut times: Vec<u32> = entries.values().map(|e| e.checked).collect();
    if times.is_empty() {
        return;
    }
    let mid = times.len() / 2;
    let (_, &mut cut, _) = times.select_nth_unstable(mid);
    entries.retain(|_, e| e.checked > cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn d(byte: u8) -> Digest {
        Digest::sha256_of(&[byte])
    }

    #[test]
    fn remembers_per_rule_and_target_until_the_full_check_is_due() {
        let c = Confirmed::default();
        let daily = Schedule::parse("@every 24h").unwrap();
        let now = c.base;
        let t = r("reg.example/m/app:latest");
        assert_eq!(c.known("r", &t, &daily, now), None);
        c.confirm("r", &t, &d(1), now);
        assert_eq!(c.known("r", &t, &daily, now), Some(d(1)));
        // Other rule, other tag, other repository: unknown.
        assert_eq!(c.known("other", &t, &daily, now), None);
        assert_eq!(c.known("r", &r("reg.example/m/app:v2"), &daily, now), None);
        assert_eq!(
            c.known("r", &r("reg.example/n/app:latest"), &daily, now),
            None
        );
        // A day on, the full check is due: unknown until confirmed again.
        let later = now + chrono::Duration::hours(25);
        assert_eq!(c.known("r", &t, &daily, later), None);
        c.confirm("r", &t, &d(2), later);
        assert_eq!(c.known("r", &t, &daily, later), Some(d(2)));
        c.forget("r", &t);
        assert_eq!(c.known("r", &t, &daily, later), None);
        assert!(c.is_empty());
    }

    #[test]
    fn only_sha256_digests_are_remembered() {
        let c = Confirmed::default();
        let t = r("reg.example/app:v1");
        c.confirm("r", &t, &d(1), c.base);
        let other = Digest::compute(Algorithm::Sha512, b"x");
        c.confirm("r", &t, &other, c.base);
        let daily = Schedule::parse("@daily").unwrap();
        assert_eq!(c.known("r", &t, &daily, c.base), None);
        assert!(c.is_empty());
    }

    #[test]
    fn full_memory_forgets_the_older_half() {
        let mut entries = HashMap::new();
        for i in 0..10u32 {
            let mut k = [0; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            entries.insert(
                k,
                Entry {
                    digest: [0; 32],
                    checked: i,
                },
            );
        }
        forget_older_half(&mut entries);
        let mut left: Vec<u32> = entries.values().map(|e| e.checked).collect();
        left.sort();
        assert_eq!(left, [6, 7, 8, 9]);
        // All of one age: all go (the next runs ask the targets again).
        for e in entries.values_mut() {
            e.checked = 3;
        }
        forget_older_half(&mut entries);
        assert!(entries.is_empty());
    }

    #[test]
    fn the_memory_never_passes_its_cap() {
        let c = Confirmed::default();
        let daily = Schedule::parse("@every 24h").unwrap();
        for i in 0..(MAX_ENTRIES + 10) {
            let now = c.base + chrono::Duration::seconds(i as i64);
            c.confirm("r", &r(&format!("reg.example/app:t{i}")), &d(1), now);
        }
        assert!(c.len() <= MAX_ENTRIES, "{}", c.len());
        // The newest are the ones kept.
        let last = format!("reg.example/app:t{}", MAX_ENTRIES + 9);
        let now = c.base + chrono::Duration::seconds(MAX_ENTRIES as i64 + 10);
        assert_eq!(c.known("r", &r(&last), &daily, now), Some(d(1)));
    }
}
