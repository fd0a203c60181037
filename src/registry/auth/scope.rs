//! Token scopes: what access a request needs and what a cached token grants.
//!
//! The token spec writes a scope as `type:name:actions` (`repository:library/alpine:pull`,
//! `repository:t:pull,push`, `registry:catalog:*`). Callers name the scopes of a request as
//! [`Scope`]s; the cache merges them per resource into a [`ScopeSet`] so a token fetched for
//! `pull,push` on `t` and `pull` on `src` (a push with a mount) also serves a plain pull of `t`,
//! instead of one token per request shape.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Access asked of a token: `actions` on a repository. Displays as the token spec writes it,
/// `repository:foo/bar:pull,push`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// Repository path, e.g. `library/alpine`.
    pub repository: String,
    /// Actions, e.g. `pull`, `push`.
    pub actions: Vec<String>,
}

impl Scope {
    /// `pull` on `repository`: what reading a source needs.
    pub fn pull(repository: impl Into<String>) -> Self {
        Scope {
            repository: repository.into(),
            actions: vec!["pull".to_string()],
        }
    }

    /// `pull,push` on `repository`: what writing a target needs (a push HEADs first).
    pub fn push_pull(repository: impl Into<String>) -> Self {
        Scope {
            repository: repository.into(),
            actions: vec!["pull".to_string(), "push".to_string()],
        }
    }

    /// `delete,pull,push` on `repository`: what deleting a manifest needs (distribution's
    /// token authorizer asks for `delete`).
    pub fn delete(repository: impl Into<String>) -> Self {
        Scope {
            repository: repository.into(),
            actions: ["delete", "pull", "push"].map(str::to_string).to_vec(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "repository:{}:{}",
            self.repository,
            self.actions.join(",")
        )
    }
}

/// A set of scopes, merged per resource: `repository:foo` → {`pull`, `push`}.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ScopeSet(BTreeMap<String, BTreeSet<String>>);

impl ScopeSet {
    pub(super) fn from_scopes(scopes: &[Scope]) -> Self {
        let mut set = ScopeSet::default();
        for s in scopes {
            set.add(format!("repository:{}", s.repository), &s.actions);
        }
        set
    }

    pub(super) fn add(&mut self, resource: String, actions: &[impl AsRef<str>]) {
        let actions: BTreeSet<String> = actions
            .iter()
            .map(|a| a.as_ref().trim())
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if !actions.is_empty() {
            self.0.entry(resource).or_default().extend(actions);
        }
    }

    /// Adds a scope as the token spec writes it, `type:name:actions` (the name may itself
    /// contain `:`, e.g. a registry host with a port). Returns false if it is unreadable.
    pub(super) fn add_raw(&mut self, raw: &str) -> bool {
        let Some((resource, actions)) = raw.rsplit_once(':') else {
            return false;
        };
        let Some((kind, name)) = resource.split_once(':') else {
            return false;
        };
        if kind.is_empty() || name.is_empty() {
            return false;
        }
        let actions: Vec<&str> = actions.split(',').collect();
        self.add(resource.to_string(), &actions);
        true
    }

    /// Whether a token granted for `self` serves a request needing `other`.
    pub(super) fn covers(&self, other: &ScopeSet) -> bool {
        other.0.iter().all(|(resource, actions)| {
            self.0
                .get(resource)
                .is_some_and(|have| have.contains("*") || actions.is_subset(have))
        })
    }

    pub(super) fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(resource, actions)| {
                format!(
                    "{resource}:{}",
                    actions.iter().cloned().collect::<Vec<_>>().join(",")
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_display_and_sets() {
        assert_eq!(
            Scope::pull("library/alpine").to_string(),
            "repository:library/alpine:pull"
        );
        assert_eq!(
            Scope::push_pull("a/b").to_string(),
            "repository:a/b:pull,push"
        );

        let mut set =
            ScopeSet::from_scopes(&[Scope::pull("t"), Scope::push_pull("t"), Scope::pull("src")]);
        assert_eq!(
            set.to_strings(),
            ["repository:src:pull", "repository:t:pull,push"]
        );
        assert!(set.add_raw("repository:host:5000/x:pull"));
        assert!(set.add_raw("registry:catalog:*"));
        assert!(!set.add_raw("nonsense"));
        assert!(!set.add_raw(":x:pull"));
        assert_eq!(
            set.to_strings(),
            [
                "registry:catalog:*",
                "repository:host:5000/x:pull",
                "repository:src:pull",
                "repository:t:pull,push"
            ]
        );

        let granted = ScopeSet::from_scopes(&[Scope::push_pull("t"), Scope::pull("src")]);
        assert!(granted.covers(&ScopeSet::from_scopes(&[Scope::pull("t")])));
        assert!(granted.covers(&ScopeSet::from_scopes(&[
            Scope::pull("src"),
            Scope::pull("t")
        ])));
        assert!(granted.covers(&ScopeSet::default()));
        assert!(!granted.covers(&ScopeSet::from_scopes(&[Scope::push_pull("src")])));
        assert!(!granted.covers(&ScopeSet::from_scopes(&[Scope::pull("other")])));
        let mut wildcard = ScopeSet::default();
        wildcard.add_raw("repository:t:*");
        assert!(wildcard.covers(&ScopeSet::from_scopes(&[Scope::push_pull("t")])));
    }
}
