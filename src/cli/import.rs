//! `crossdock import SOURCE TARGET…`: one image, every platform, to one or more targets.

use anyhow::{Context as _, bail};
use clap::Args;

use super::progress::{self, human_bytes};
use super::{EXIT_FAILURE, EXIT_USAGE, RegistryFlags};
use crate::copy::{
    CopyError, CopyOptions, CopyReport, Engine, EngineOptions, Source, Target, TargetStatus,
    error_chain,
};
use crate::manifest::{ManifestView, Platform};
use crate::reference::{ArchiveKind, Reference};
use crate::registry::Transport;

/// Arguments of `import`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock import oci:examples/hello:1.0 localhost:5001/hello:1.0
  crossdock import docker.io/library/alpine:3.20 registry.example.com/mirror/alpine
  crossdock import alpine:3.20 reg-a.example/alpine reg-b.example/alpine --platform linux/amd64,linux/arm64
  crossdock import alpine:3.20 oci:./alpine:3.20 --dry-run")]
pub struct ImportArgs {
    /// Source image: a tag or digest reference, e.g. docker.io/library/alpine:3.20.
    pub source: String,
    /// Target repositories, with an optional tag (default: the source tag).
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// Another tag to set in the first target's repository (repeatable).
    #[arg(long = "tag", short = 't', value_name = "TAG")]
    pub tags: Vec<String>,
    /// Move a target tag that points at another image.
    #[arg(long)]
    pub force: bool,
    /// Copy only these platforms, os/arch[/variant] (repeatable or comma-separated); default all.
    #[arg(
        long = "platform",
        value_delimiter = ',',
        value_name = "OS/ARCH[/VARIANT]"
    )]
    pub platforms: Vec<String>,
    /// Before moving a target tag off another image, tag that image with this template so it
    /// stays reachable: {tag}, {date}, {datetime}, {digest}; e.g. '{tag}-backup-{date}'.
    #[arg(long, value_name = "TEMPLATE")]
    pub backup_tag: Option<String>,
    /// Show what would be copied; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Copy non-distributable (foreign) layers too.
    #[arg(long)]
    pub include_foreign: bool,
    /// Do not copy signatures, SBOMs and other artifacts attached to the image.
    #[arg(long)]
    pub no_referrers: bool,
    /// Blob transfers at once.
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub concurrency: usize,
    /// Copy only if a cosign signature of the source's digest verifies with this PEM public
    /// key (repeatable: any one key suffices).
    #[arg(long = "verify-key", value_name = "FILE")]
    pub verify_keys: Vec<std::path::PathBuf>,
    /// Keyless: copy only if a cosign keyless signature's certificate names this identity
    /// (e-mail or URI); needs --verify-issuer and --verify-trust-root.
    #[arg(
        long,
        value_name = "IDENTITY",
        conflicts_with = "verify_identity_regexp"
    )]
    pub verify_identity: Option<String>,
    /// Keyless: a regular expression the certificate's whole identity must match.
    #[arg(long, value_name = "REGEX")]
    pub verify_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer the certificate must name.
    #[arg(long, value_name = "URL")]
    pub verify_issuer: Option<String>,
    /// Keyless: the Sigstore trust root (TrustedRoot JSON, e.g. trusted_root.json).
    #[arg(long, value_name = "FILE")]
    pub verify_trust_root: Option<std::path::PathBuf>,
    /// Registry connection options.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// The source and targets an import names, resolved (tags defaulted as documented).
#[derive(Debug)]
struct Plan {
    source: Reference,
    targets: Vec<(Reference, Vec<String>)>,
    platforms: Vec<Platform>,
}

fn plan(args: &ImportArgs) -> anyhow::Result<Plan> {
    let source = Reference::parse(&args.source)
        .with_context(|| format!("source {:?}", args.source))?
        .with_default_tag();
    let mut targets = Vec::new();
    for (i, t) in args.targets.iter().enumerate() {
        let mut r = Reference::parse(t).with_context(|| format!("target {t:?}"))?;
        // A docker archive's image keeps the source's name unless given one (as docker save).
        if let (Some((ArchiveKind::Docker, _)), "", Some(name)) =
            (r.archive(), r.repository(), source.image_name())
        {
            r = r.with_image_name(&name);
        }
        if r.digest().is_some() {
            bail!("target {t:?} names a digest; a target is a repository with an optional tag");
        }
        let mut tags: Vec<String> = match (r.tag(), source.tag()) {
            (Some(tag), _) => vec![tag.to_string()],
            // A digest source with a tagless target: copy by digest, tag nothing.
            (None, Some(tag)) if source.digest().is_none() => vec![tag.to_string()],
            (None, _) => vec![],
        };
        if i == 0 {
            for tag in &args.tags {
                Reference::validate_tag(tag).with_context(|| format!("--tag {tag:?}"))?;
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
        }
        targets.push((r.repository_only(), tags));
    }
    if let Some(t) = &args.backup_tag {
        crate::copy::backup::check_template(t)
            .map_err(anyhow::Error::msg)
            .context("--backup-tag")?;
    }
    let platforms = args
        .platforms
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| Platform::parse(p).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("--platform")?;
    Ok(Plan {
        source,
        targets,
        platforms,
    })
}

/// Runs `import`.
pub(super) async fn run(args: ImportArgs) -> anyhow::Result<u8> {
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}", super::errors::render(&e));
            return Ok(EXIT_USAGE);
        }
    };
    let policy = match signature_policy(&args) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return Ok(EXIT_USAGE);
        }
    };
    let target_registries: Vec<&str> = plan.targets.iter().map(|(r, _)| r.registry()).collect();
    let mut connector = args
        .registry
        .connector(Some(plan.source.registry()), &target_registries)?;
    connector.set_archive_targets(target_registries.iter().copied(), args.force);
    let source = Source {
        transport: connector.get(plan.source.registry())?,
        reference: plan.source.clone(),
    };
    // Signature policy (issue 17): the copy reads only the digest whose signature verified.
    let source = match &policy {
        None => source,
        Some(p) => match p.admit(&*source.transport, &source.reference).await {
            Ok((pinned, _)) => Source {
                reference: pinned,
                ..source
            },
            Err(refusal) => {
                print_refusal(&plan.source, &refusal, args.json);
                return Ok(EXIT_FAILURE);
            }
        },
    };
    let targets = plan
        .targets
        .iter()
        .map(|(r, tags)| {
            Ok(Target {
                transport: connector
                    .get(r.registry())
                    .with_context(|| format!("target {r}"))?,
                reference: r.clone(),
                tags: tags.clone(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Err(e) = check_one_platform(&plan, &source).await {
        eprintln!("error: {e:#}");
        return Ok(EXIT_USAGE);
    }
    let bars = progress::for_terminal(!args.json);
    let opts = CopyOptions {
        platforms: plan.platforms.clone(),
        force: args.force,
        dry_run: args.dry_run,
        include_foreign: args.include_foreign,
        referrers: !args.no_referrers,
        progress: bars.clone(),
        backup_tag: args.backup_tag.clone(),
        source_tags: None,
        confirmed: Vec::new(),
    };
    let engine = Engine::new(EngineOptions {
        max_concurrent_blobs: args.concurrency.max(1),
        ..EngineOptions::default()
    });
    let result = engine.copy(&source, &targets, &opts).await;
    bars.finish();
    let mut report = result.with_context(|| format!("importing {}", plan.source))?;
    finish_archives(&targets, &mut report).await;
    let made = source.transport.made_manifest(&report.source_digest);
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        json["source_manifest_made"] = made.into();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_summary(&report);
        if made {
            println!(
                "note: {} holds no manifest (a docker save archive): crossdock made one \
                 (Docker v2 schema 2), digest {}; config and layers are the archive's as they are",
                plan.source, report.source_digest
            );
        }
    }
    Ok(if report.ok() { 0 } else { EXIT_FAILURE })
}

/// The signature policy the flags ask for; every bad flag is reported, not only the first.
fn signature_policy(args: &ImportArgs) -> Result<Option<crate::trust::Policy>, Vec<String>> {
    use crate::trust::{Identity, Keyless, Policy, TrustRoot};
    let mut errors = Vec::new();
    let keys = crate::trust::Policy::load(&args.verify_keys)
        .map(|p| p.map(|p| p.into_keys()).unwrap_or_default())
        .unwrap_or_else(|es| {
            errors.extend(es.iter().map(|e| format!("--verify-key {e}")));
            Vec::new()
        });
    let identity = match (&args.verify_identity, &args.verify_identity_regexp) {
        (Some(e), _) => Some(Identity::Exact(e.clone())),
        (None, Some(r)) => Identity::regexp(r)
            .map_err(|e| errors.push(format!("--verify-identity-regexp {r:?}: {e}")))
            .ok(),
        (None, None) => None,
    };
    let asked = args.verify_identity.is_some()
        || args.verify_identity_regexp.is_some()
        || args.verify_issuer.is_some()
        || args.verify_trust_root.is_some();
    let mut keyless = None;
    if asked {
        let root = match &args.verify_trust_root {
            Some(f) => TrustRoot::load(f)
                .map_err(|e| errors.push(format!("--verify-trust-root {e}")))
                .ok(),
            None => {
                errors.push("keyless verification needs --verify-trust-root FILE".into());
                None
            }
        };
        if identity.is_none() && args.verify_identity_regexp.is_none() {
            errors.push(
                "keyless verification needs --verify-identity (or --verify-identity-regexp)".into(),
            );
        }
        if args.verify_issuer.is_none() {
            errors.push("keyless verification needs --verify-issuer URL".into());
        }
        if let (Some(root), Some(identity), Some(issuer)) = (root, identity, &args.verify_issuer) {
            keyless = Some(Keyless::new(
                std::sync::Arc::new(root),
                identity,
                issuer.clone(),
            ));
        }
    }
    if errors.is_empty() {
        Ok(Policy::with_keyless(keys, keyless))
    } else {
        Err(errors)
    }
}

fn print_refusal(source: &Reference, refusal: &crate::trust::Refusal, json: bool) {
    if json {
        let v = serde_json::json!({
            "source": source.to_string(),
            "refused": {"reason": refusal.reason(), "error": refusal.to_string()},
        });
        println!("{v:#}");
    } else {
        eprintln!("refused ({}): {refusal}; nothing copied", refusal.reason());
    }
}

/// A docker archive holds one platform: with a multi-platform source and no `--platform`,
/// says so before anything is copied (the archive would refuse the index only at the end).
async fn check_one_platform(plan: &Plan, source: &Source) -> anyhow::Result<()> {
    let Some((target, _)) = plan
        .targets
        .iter()
        .find(|(r, _)| matches!(r.archive(), Some((ArchiveKind::Docker, _))))
    else {
        return Ok(());
    };
    if !plan.platforms.is_empty() {
        return Ok(());
    }
    let r = &source.reference;
    let m = source
        .transport
        .manifest_get(r.repository(), &r.manifest_reference())
        .await
        .with_context(|| format!("reading {r}"))?;
    let ManifestView::Index(index) = m.view() else {
        return Ok(());
    };
    let platforms: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(ToString::to_string)
        .collect();
    if platforms.len() > 1 {
        bail!(
            "{target} holds one platform and {r} has {}: {}; choose one with --platform \
             (e.g. --platform {})",
            platforms.len(),
            platforms.join(", "),
            platforms[0]
        );
    }
    Ok(())
}

/// Writes out the archive targets the copy reached (an archive is one file, written whole
/// once complete); a failure marks that target failed.
async fn finish_archives(targets: &[Target], report: &mut CopyReport) {
    for (target, tr) in targets.iter().zip(report.targets.iter_mut()) {
        if target.reference.archive().is_none()
            || !matches!(tr.status, TargetStatus::Copied | TargetStatus::UpToDate)
        {
            continue;
        }
        if let Err(e) = Transport::finish(&*target.transport).await {
            tr.status = TargetStatus::failed(CopyError::Target {
                target: tr.target.clone(),
                error: Box::new(e),
            });
        }
    }
}

fn print_summary(r: &CopyReport) {
    let kind = match r.media_type.as_str() {
        "" => String::new(),
        mt => format!(", {}", crate::cli::inspect::media_type_name(mt)),
    };
    let platforms = if r.platforms.is_empty() {
        String::new()
    } else {
        format!(
            ", {} platform(s): {}",
            r.platforms.len(),
            r.platforms.join(", ")
        )
    };
    println!("source {} ({}{kind}{platforms})", r.source, r.source_digest);
    for t in &r.targets {
        let tags = if t.tags.is_empty() {
            format!("@{}", t.digest)
        } else {
            format!(":{}", t.tags.join(", :"))
        };
        match &t.status {
            TargetStatus::UpToDate => {
                println!(
                    "  {}{tags}: already at {} — nothing to do",
                    t.target, t.digest
                )
            }
            TargetStatus::Failed(e) => {
                println!("  {}{tags}: FAILED: {}", t.target, error_chain(&**e))
            }
            TargetStatus::Pending => println!("  {}{tags}: not reached", t.target),
            s => {
                let verb = if *s == TargetStatus::DryRun {
                    "would copy"
                } else {
                    "copied"
                };
                println!(
                    "  {}{tags}: {verb} {} blob(s) ({}), mounted {} ({}), skipped {} ({}); {} manifest(s); digest {}",
                    t.target,
                    t.counts.blobs_copied,
                    human_bytes(t.counts.bytes_copied),
                    t.counts.blobs_mounted,
                    human_bytes(t.counts.bytes_mounted),
                    t.counts.blobs_skipped,
                    human_bytes(t.counts.bytes_skipped),
                    if *s == TargetStatus::DryRun {
                        r.manifests as u64
                    } else {
                        t.counts.manifests_pushed
                    },
                    t.digest,
                );
                if t.counts.referrers_copied > 0 {
                    println!(
                        "    {} attached artifact(s) copied",
                        t.counts.referrers_copied
                    );
                }
                for (tag, old) in &t.previous {
                    println!("    moved tag {tag} (was {old})");
                }
                for (backup, old) in &t.backups {
                    println!("    kept the old image {old} as tag {backup}");
                }
            }
        }
    }
    if r.filtered {
        println!(
            "note: the platform filter wrote a new index: the target digest differs from the source's ({})",
            r.source_digest
        );
    }
    if r.skipped_foreign > 0 {
        println!(
            "note: {} foreign layer(s) not copied (use --include-foreign)",
            r.skipped_foreign
        );
    }
    println!(
        "{} in {:.2}s",
        if r.dry_run { "dry run" } else { "done" },
        r.seconds
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> ImportArgs {
        let mut v = vec!["crossdock", "import"];
        v.extend_from_slice(args);
        match crate::cli::Cli::parse_from(v).command {
            crate::cli::Command::Import(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn target_tags_default_to_the_source_tag() {
        let p = plan(&parse(&[
            "alpine:3.20",
            "localhost:5000/m/alpine",
            "localhost:5000/x:v1",
        ]))
        .unwrap();
        assert_eq!(p.targets[0].1, vec!["3.20"]);
        assert_eq!(p.targets[1].1, vec!["v1"]);
        let p = plan(&parse(&[
            "alpine",
            "localhost:5000/m/alpine",
            "-t",
            "extra",
            "-t",
            "latest",
        ]))
        .unwrap();
        assert_eq!(p.targets[0].1, vec!["latest", "extra"]);
    }

    #[test]
    fn digest_source_with_tagless_target_tags_nothing() {
        let d = crate::digest::Digest::sha256_of(b"x");
        let p = plan(&parse(&[&format!("alpine@{d}"), "localhost:5000/m/alpine"])).unwrap();
        assert!(p.targets[0].1.is_empty());
    }

    #[test]
    fn bad_input_is_named() {
        let e = plan(&parse(&["alpine", "localhost:5000/Bad"])).unwrap_err();
        assert!(
            format!("{e:#}").contains("target \"localhost:5000/Bad\""),
            "{e:#}"
        );
        let e = plan(&parse(&[
            "alpine",
            "localhost:5000/ok",
            "--platform",
            "linux",
        ]))
        .unwrap_err();
        assert!(format!("{e:#}").contains("--platform"), "{e:#}");
    }
}
