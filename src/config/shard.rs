//! Sharding: several daemons share one configuration, each taking a stable, disjoint share of
//! the rules, together covering every rule exactly once.
//!
//! A rule belongs to shard `h mod count`, where `h` is the first 8 bytes (big-endian) of the
//! SHA-256 of its name. The hash must be the same in every process and every release (std's
//! hasher is randomly seeded per process), and depends on the name alone, so adding a rule
//! never moves another one; changing `count` does reshuffle, as with any modulo.
//!
//! The shard comes from `--shard INDEX/COUNT` or the environment, so that a Kubernetes Indexed
//! Job (which sets `JOB_COMPLETION_INDEX`) or a StatefulSet (pods named `crossdock-0`,
//! `crossdock-1`, …) can feed it without a wrapper script:
//! - `CROSSDOCK_SHARD=2/5`, or
//! - `CROSSDOCK_SHARD_COUNT=5` with the index from `CROSSDOCK_SHARD_INDEX=2`, else
//!   `JOB_COMPLETION_INDEX`; `CROSSDOCK_SHARD_INDEX=hostname` takes the trailing number of
//!   `HOSTNAME` (a StatefulSet ordinal).

use std::fmt;

use sha2::{Digest as _, Sha256};

/// Why a shard specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `INDEX/COUNT` with numbers.
    #[error("invalid shard {0:?}: expected INDEX/COUNT, e.g. 0/3")]
    Syntax(String),
    /// Count is zero or index is not below it.
    #[error("invalid shard {index}/{count}: need COUNT >= 1 and 0 <= INDEX < COUNT")]
    Range {
        /// The index given.
        index: u32,
        /// The count given.
        count: u32,
    },
    /// An environment variable is malformed or one of a needed pair is missing.
    #[error("{var}: {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// This process's share of the rules: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// The shard (0-based, below `count`) a rule name belongs to. `count` 0 is taken as 1.
pub fn shard_of(rule_name: &str, count: u32) -> u32 {
    let hash = Sha256::digest(rule_name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
}

impl Shard {
    /// Every rule: shard 0 of 1.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 || index >= count {
            return Err(ShardError::Range { index, count });
        }
        Ok(Shard { index, count })
    }

    /// Parses `INDEX/COUNT`, e.g. `2/5`.
    pub fn parse(s: &str) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax(s.to_string());
        let (i, c) = s.trim().split_once('/').ok_or_else(syntax)?;
        let index = i.trim().parse().map_err(|_| syntax())?;
        let count = c.trim().parse().map_err(|_| syntax())?;
        Shard::new(index, count)
    }

    /// The shard the environment names (see the module documentation), `None` when it names
    /// none. `env` looks a variable up (`|k| std::env::var(k).ok()` in the daemon).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, ShardError> {
        if let Some(s) = env("CROSSDOCK_SHARD") {
            return Shard::parse(&s).map(Some);
        }
        let count = env("CROSSDOCK_SHARD_COUNT");
        let index = env("CROSSDOCK_SHARD_INDEX");
        let Some(count) = count else {
            if index.is_some() {
                return Err(ShardError::Env {
                    var: "CROSSDOCK_SHARD_INDEX",
                    reason: "set without CROSSDOCK_SHARD_COUNT".to_string(),
                });
            }
            return Ok(None);
        };
        let count: u32 = count.trim().parse().map_err(|_| ShardError::Env {
            var: "CROSSDOCK_SHARD_COUNT",
            reason: format!("{count:?} is not a number"),
        })?;
        let number = |var: &'static str, v: &str| {
            v.trim().parse::<u32>().map_err(|_| ShardError::Env {
                var,
                reason: format!("{v:?} is not a number"),
            })
        };
        let index = match index.as_deref().map(str::trim) {
            Some("hostname") => {
                let host = env("HOSTNAME").ok_or(ShardError::Env {
                    var: "HOSTNAME",
                    reason: "not set (CROSSDOCK_SHARD_INDEX=hostname reads the ordinal from it)"
                        .to_string(),
                })?;
                hostname_ordinal(&host).ok_or_else(|| ShardError::Env {
                    var: "HOSTNAME",
                    reason: format!("{host:?} does not end in -N (a StatefulSet ordinal)"),
                })?
            }
            Some(i) => number("CROSSDOCK_SHARD_INDEX", i)?,
            None => match env("JOB_COMPLETION_INDEX") {
                Some(i) => number("JOB_COMPLETION_INDEX", &i)?,
                None => {
                    return Err(ShardError::Env {
                        var: "CROSSDOCK_SHARD_COUNT",
                        reason: "set, but no index: set CROSSDOCK_SHARD_INDEX (a number or \
                                 `hostname`) or run as an Indexed Job (JOB_COMPLETION_INDEX)"
                            .to_string(),
                    });
                }
            },
        };
        Shard::new(index, count).map(Some)
    }

    /// The 0-based index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shards there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether this shard owns the rule named `rule_name`.
    pub fn owns(&self, rule_name: &str) -> bool {
        shard_of(rule_name, self.count) == self.index
    }
}

/// `crossdock-3` → 3: the ordinal a StatefulSet puts at the end of its pods' host names.
fn hostname_ordinal(host: &str) -> Option<u32> {
    let (_, n) = host.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

impl Default for Shard {
    fn default() -> Self {
        Shard::ALL
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Shard::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn every_rule_in_exactly_one_shard() {
        let names: Vec<String> = (0..200).map(|i| format!("rule-{i}")).collect();
        for count in 1..=8u32 {
            let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
            let mut sizes = vec![0usize; count as usize];
            for n in &names {
                let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns(n)).collect();
                assert_eq!(owners.len(), 1, "{n} with {count} shards: {owners:?}");
                sizes[owners[0].index() as usize] += 1;
            }
            // A hash that put everything in one shard would pass the test above.
            if count > 1 {
                assert!(sizes.iter().all(|&s| s > 0), "{count}: {sizes:?}");
            }
        }
    }

    #[test]
    fn stable_known_values() {
        // Pinned: these must never change between releases, or a rolling upgrade of a sharded
        // deployment would run some rules twice and others not at all.
        // sha256("") starts e3b0c442 98fc1c14 (computed independently with Python hashlib).
        assert_eq!(shard_of("", 7), (0xe3b0c44298fc1c14u64 % 7) as u32);
        assert_eq!(shard_of("alpine", 1), 0);
        assert_eq!(shard_of("alpine", 5), PINNED_ALPINE_5);
        assert_eq!(shard_of("busybox", 3), PINNED_BUSYBOX_3);
    }

    const PINNED_ALPINE_5: u32 = 3; // 0x54c5b3dd459d5ef7 % 5
    const PINNED_BUSYBOX_3: u32 = 2; // 0x9d75f0d7c398df56 % 3

    #[test]
    fn parse() {
        assert_eq!(Shard::parse("2/5").unwrap(), Shard::new(2, 5).unwrap());
        assert_eq!(Shard::parse(" 0 / 1 ").unwrap(), Shard::ALL);
        assert_eq!(Shard::parse("2/5").unwrap().to_string(), "2/5");
        assert!(matches!(Shard::parse("5/5"), Err(ShardError::Range { .. })));
        assert!(matches!(Shard::parse("0/0"), Err(ShardError::Range { .. })));
        for bad in ["2", "a/5", "2/b", "-1/5", "1/2/3", ""] {
            assert!(
                matches!(Shard::parse(bad), Err(ShardError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn from_environment() {
        let s = |i, c| Some(Shard::new(i, c).unwrap());
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
        assert_eq!(
            Shard::from_env(env(&[("CROSSDOCK_SHARD", "1/3")])).unwrap(),
            s(1, 3)
        );
        let pair = [
            ("CROSSDOCK_SHARD_INDEX", "2"),
            ("CROSSDOCK_SHARD_COUNT", "4"),
        ];
        assert_eq!(Shard::from_env(env(&pair)).unwrap(), s(2, 4));
        let job = [
            ("JOB_COMPLETION_INDEX", "3"),
            ("CROSSDOCK_SHARD_COUNT", "4"),
        ];
        assert_eq!(Shard::from_env(env(&job)).unwrap(), s(3, 4));
        let sts = [
            ("CROSSDOCK_SHARD_INDEX", "hostname"),
            ("HOSTNAME", "crossdock-mirror-1"),
            ("CROSSDOCK_SHARD_COUNT", "2"),
        ];
        assert_eq!(Shard::from_env(env(&sts)).unwrap(), s(1, 2));
        // Without being asked, HOSTNAME is not read (every pod has one).
        let no = [("HOSTNAME", "crossdock-1"), ("CROSSDOCK_SHARD_COUNT", "2")];
        assert!(Shard::from_env(env(&no)).is_err());
        assert!(Shard::from_env(env(&[("CROSSDOCK_SHARD_INDEX", "1")])).is_err());
        let bad_host = [
            ("CROSSDOCK_SHARD_INDEX", "hostname"),
            ("HOSTNAME", "crossdock"),
            ("CROSSDOCK_SHARD_COUNT", "2"),
        ];
        assert!(Shard::from_env(env(&bad_host)).is_err());
        let out_of_range = [
            ("JOB_COMPLETION_INDEX", "4"),
            ("CROSSDOCK_SHARD_COUNT", "4"),
        ];
        assert!(matches!(
            Shard::from_env(env(&out_of_range)),
            Err(ShardError::Range { .. })
        ));
    }
}
