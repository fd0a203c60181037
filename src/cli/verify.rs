//! `crossdock verify REF…` and `crossdock verify --config FILE`: re-read images at a mirror
//! and check every digest and size ([`crate::audit`]). Exit 0 when everything is intact, 1 when
//! anything is missing, corrupt or unreadable (each named), 2 for bad usage.

use std::path::PathBuf;

use clap::Args;

use super::{ConnectFlags, DestCreds, EXIT_FAILURE, EXIT_USAGE};
use crate::audit::{self, AuditReport, Sample};
use crate::reference::Reference;

/// Arguments of `verify`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock verify localhost:5001/mirror/library/alpine:3.20
  crossdock verify --config config.toml --sample 10%
  crossdock verify --json oci:mirror:1.0")]
pub struct VerifyArgs {
    /// Images to check (tag or digest references).
    pub images: Vec<String>,
    /// Check every image every rule of this configuration mirrored (at its targets).
    #[arg(long, value_name = "FILE", conflicts_with = "images")]
    pub config: Option<PathBuf>,
    /// Read the content of only this share of the blobs, chosen by digest (the same blobs on
    /// every run); the others are only checked to exist. E.g. 10%.
    #[arg(long, value_name = "N%", value_parser = Sample::parse)]
    pub sample: Option<Sample>,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
    /// Registry connection options (with --config, the file's registry settings apply).
    #[command(flatten)]
    pub connect: ConnectFlags,
    /// Credentials of the registries checked (with --config, the file's apply).
    #[command(flatten)]
    pub dest: DestCreds,
}

/// Runs `verify`.
pub(super) async fn run(args: VerifyArgs) -> anyhow::Result<u8> {
    let sample = args.sample.unwrap_or(Sample::ALL);
    let (reports, problems) = match &args.config {
        Some(path) => match by_config(path, sample).await {
            Some(r) => r,
            None => return Ok(EXIT_USAGE),
        },
        None => {
            if args.images.is_empty() {
                eprintln!("error: name images to verify, or --config FILE");
                return Ok(EXIT_USAGE);
            }
            let mut refs = Vec::new();
            for i in &args.images {
                match Reference::parse(i) {
                    Ok(r) => refs.push(r.with_default_tag()),
                    Err(e) => {
                        eprintln!("error: {i:?}: {e}");
                        return Ok(EXIT_USAGE);
                    }
                }
            }
            let registries: Vec<&str> = refs.iter().map(Reference::registry).collect();
            let mut connector = args.connect.connector(None);
            args.dest.add_targets(&mut connector, &registries)?;
            let mut reports = Vec::new();
            for r in &refs {
                let t = connector.get(r.registry())?;
                reports.push(audit::audit(&*t, r, sample).await);
            }
            (reports, Vec::new())
        }
    };
    let ok = problems.is_empty() && reports.iter().all(AuditReport::intact);
    if args.json {
        let v = serde_json::json!({"ok": ok, "images": reports, "errors": problems});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_text(&reports, &problems);
    }
    Ok(if ok { 0 } else { EXIT_FAILURE })
}

async fn by_config(
    path: &std::path::Path,
    sample: Sample,
) -> Option<(Vec<AuditReport>, Vec<String>)> {
    let plan = match crate::config::load(path) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!(
                "error: configuration {} has problems:\n{errors}",
                path.display()
            );
            return None;
        }
    };
    let connector = crate::daemon::connector_for(&plan);
    let mut reports = Vec::new();
    let mut problems = Vec::new();
    for rule in &plan.rules {
        let (r, p) = audit::rule::audit_rule(rule, &connector, sample).await;
        reports.extend(r);
        problems.extend(p);
    }
    Some((reports, problems))
}

fn print_text(reports: &[AuditReport], problems: &[String]) {
    for r in reports {
        let digest = r.digest.as_deref().unwrap_or("?");
        let sampled = if r.blobs_headed > 0 {
            format!(
                " ({} more present, content not read: --sample)",
                r.blobs_headed
            )
        } else {
            String::new()
        };
        let state = if r.intact() { "intact" } else { "FAILED" };
        println!(
            "{} ({digest}): {state} — {} manifest(s), {} blob(s) read, {}{sampled}",
            r.image,
            r.manifests,
            r.blobs_read,
            super::progress::human_bytes(r.bytes_read),
        );
        for f in &r.findings {
            let what = match f.problem {
                audit::Problem::Missing => "MISSING",
                audit::Problem::Corrupt => "CORRUPT",
                audit::Problem::Unreadable => "UNREADABLE",
            };
            println!("  {what} {} {}: {}", f.kind, f.digest, f.detail);
        }
    }
    for p in problems {
        println!("error: {p}");
    }
    let bad = reports.iter().filter(|r| !r.intact()).count();
    println!(
        "{} image(s) checked, {} intact, {bad} failed{}",
        reports.len(),
        reports.len() - bad,
        if problems.is_empty() {
            String::new()
        } else {
            format!(", {} error(s)", problems.len())
        }
    );
}
