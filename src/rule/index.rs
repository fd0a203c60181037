//! Index rules, resolved: which per-platform tags compose which multi-platform index.
//!
//! An [`IndexPlan`] is one `[[indexes]]` entry after validation (see [`crate::config`]): the
//! daemon keeps `target` pointing at an index of the images `sources` point at, composing it
//! again (with [`crate::copy::compose`]) whenever one of them moves. It is the `docker manifest
//! create` + `push` step of a build pipeline that pushes one tag per architecture
//! (`app:amd64`, `app:arm64` → `app:latest`), done by the mirror instead of by every pipeline.
//! Plain data: running one is [`super::index_run`]'s business.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::reference::Reference;
use crate::schedule::Schedule;

/// One index rule with every default resolved; built by [`crate::config`].
#[derive(Debug, Clone)]
pub struct IndexPlan {
    /// Unique name among rules and index rules (metrics label, `--rule NAME`, shard key).
    pub name: String,
    /// The index's repository and tag (a tag is required).
    pub target: Reference,
    /// The single-platform images, by tag, in index order (at least one).
    pub sources: Vec<Reference>,
    /// Annotations on the index; any makes it an OCI index (Docker's list has none).
    pub annotations: BTreeMap<String, String>,
    /// Write an OCI index even when every child is a Docker manifest.
    pub oci: bool,
    /// Copy the referrers (signatures, SBOMs) of children copied into the target repository.
    pub referrers: bool,
    /// When the rule runs (UTC).
    pub schedule: Schedule,
    /// Time limit for one run.
    pub timeout: Duration,
    /// First wait before a failed run is tried again (see [`super::RulePlan::retry_backoff`]).
    pub retry_backoff: Duration,
}

impl IndexPlan {
    /// Whether a push of `repository:tag` changes one of this index's sources. Registries are
    /// not compared (see [`crate::daemon::events`] for why); a push that only looks like one of
    /// the sources costs a check of the sources, never a wrong index.
    pub fn covers(&self, repository: &str, tag: &str) -> bool {
        self.sources
            .iter()
            .any(|s| s.repository() == repository && s.tag() == Some(tag))
    }

    /// Whether the index must be an OCI index whatever its children are.
    pub fn wants_oci(&self) -> bool {
        self.oci || !self.annotations.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_matches_repository_and_tag_of_a_source() {
        let r = |s: &str| Reference::parse(s).unwrap();
        let plan = IndexPlan {
            name: "i".into(),
            target: r("localhost:5001/app:latest"),
            sources: vec![r("localhost:5000/app:amd64"), r("localhost:5000/app:arm64")],
            annotations: BTreeMap::new(),
            oci: false,
            referrers: true,
            schedule: Schedule::parse("@hourly").unwrap(),
            timeout: Duration::from_secs(60),
            retry_backoff: Duration::from_secs(30),
        };
        assert!(plan.covers("app", "arm64"));
        assert!(!plan.covers("app", "latest"), "the target is no source");
        assert!(!plan.covers("other", "amd64"));
        assert!(!plan.wants_oci());
        let annotated = IndexPlan {
            annotations: [("k".to_string(), "v".to_string())].into(),
            ..plan
        };
        assert!(annotated.wants_oci());
    }
}
