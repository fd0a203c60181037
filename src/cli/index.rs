//! `crossdock index create TARGET SOURCE…`: a multi-platform index from single-platform images.
//!
//! The command only parses, connects and prints; the work (reading platforms, copying missing
//! children, building and pushing the index) is [`crate::copy::compose`], which a daemon rule
//! can call too.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use super::flags::parse_creds;
use super::inspect::media_type_name;
use super::{EXIT_USAGE, RegistryFlags};
use crate::copy::compose::{self, ComposeOptions, ComposeReport};
use crate::copy::{CopyOptions, Engine, NoProgress, Source, Target};
use crate::reference::Reference;

/// Arguments of `index`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock index create localhost:5001/app:1.4 localhost:5001/app:1.4-amd64 localhost:5001/app:1.4-arm64
  crossdock index create oci:./app:1.4 oci:./app:amd64 oci:./app:arm64 --oci --annotation org.opencontainers.image.version=1.4")]
pub struct IndexArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: IndexCommand,
}

/// The `index` verbs.
#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Compose a multi-platform index from single-platform images and push it to TARGET.
    Create(CreateArgs),
}

/// Arguments of `index create`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock index create localhost:5001/app:1.4 localhost:5001/app:1.4-amd64 localhost:5001/app:1.4-arm64
  crossdock index create oci:./app:1.4 oci:./app:amd64 oci:./app:arm64 --oci --annotation org.opencontainers.image.version=1.4
  crossdock index create -q localhost:5001/app:latest localhost:5001/app:amd64 localhost:5001/app:arm64")]
pub struct CreateArgs {
    /// Where the index goes: REGISTRY/REPO[:TAG] or oci:PATH[:TAG] (default tag: latest).
    pub target: String,
    /// Single-platform images (tag or digest references, registry or oci:), one per platform;
    /// their index entries follow this order.
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// An annotation on the index, KEY=VALUE (repeatable). Needs an OCI index.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Write an OCI index even when every source is a Docker image.
    #[arg(long)]
    pub oci: bool,
    /// Do not copy signatures and other artifacts attached to the source images.
    #[arg(long)]
    pub no_referrers: bool,
    /// Print a JSON report instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Print only the index digest.
    #[arg(long, short = 'q', conflicts_with = "json")]
    pub quiet: bool,
    /// Registry connection options (--src-creds apply to every source registry other than the
    /// target's).
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// Runs `index`.
pub(super) async fn run(args: IndexArgs) -> anyhow::Result<u8> {
    match args.command {
        IndexCommand::Create(a) => create(a).await,
    }
}

#[derive(Debug)]
struct Plan {
    target: Reference,
    tag: String,
    sources: Vec<Reference>,
    annotations: BTreeMap<String, String>,
}

fn plan(args: &CreateArgs) -> anyhow::Result<Plan> {
    let target = Reference::parse(&args.target)
        .with_context(|| format!("target {:?}", args.target))?
        .with_default_tag();
    if target.digest().is_some() {
        bail!(
            "target {:?} names a digest; the index gets a tag (REPO:TAG)",
            args.target
        );
    }
    let tag = target.tag().unwrap_or("latest").to_string();
    let sources = args
        .sources
        .iter()
        .map(|s| {
            Reference::parse(s)
                .map(Reference::with_default_tag)
                .with_context(|| format!("source {s:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut annotations = BTreeMap::new();
    for a in &args.annotations {
        let (k, v) = a
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .with_context(|| format!("--annotation {a:?}: expected KEY=VALUE"))?;
        annotations.insert(k.trim().to_string(), v.to_string());
    }
    Ok(Plan {
        target: target.repository_only(),
        tag,
        sources,
        annotations,
    })
}

async fn create(args: CreateArgs) -> anyhow::Result<u8> {
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}", super::errors::render(&e));
            return Ok(EXIT_USAGE);
        }
    };
    let target_registry = plan.target.registry();
    let mut connector = args
        .registry
        .connector(Some(plan.sources[0].registry()), &[target_registry])?;
    if let Some(creds) = &args.registry.read.src_creds {
        let creds = parse_creds(creds).context("--src-creds")?;
        for s in &plan.sources[1..] {
            if s.registry() != target_registry && s.registry() != plan.sources[0].registry() {
                connector.set_credentials(s.registry(), creds.clone());
            }
        }
    }
    let sources = plan
        .sources
        .iter()
        .map(|r| {
            Ok(Source {
                transport: connector.get(r.registry())?,
                reference: r.clone(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let target = Target {
        transport: connector.get(target_registry)?,
        reference: plan.target.clone(),
        tags: vec![plan.tag.clone()],
    };
    let opts = ComposeOptions {
        annotations: plan.annotations,
        oci: args.oci,
        copy: CopyOptions {
            referrers: !args.no_referrers,
            progress: Arc::new(NoProgress),
            ..CopyOptions::default()
        },
    };
    let target_display = plan.target.with_tag(&plan.tag)?;
    let report = compose::compose(&Engine::default(), &sources, &target, &opts)
        .await
        .with_context(|| format!("composing {target_display}"))?;
    if report.mixed {
        eprintln!(
            "note: the sources mix Docker and OCI images; the index is an OCI index \
             (a Docker manifest list may only hold Docker images)"
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.quiet {
        println!("{}", report.digest);
    } else {
        print_summary(&target_display, &report);
    }
    Ok(0)
}

fn print_summary(target: &Reference, r: &ComposeReport) {
    let what = if r.up_to_date {
        "already points at"
    } else {
        "now points at"
    };
    println!(
        "{target} {what} {} ({}, {} platform(s))",
        r.digest,
        media_type_name(&r.media_type),
        r.children.len()
    );
    for c in &r.children {
        let state = match (r.up_to_date, c.copied) {
            (true, _) => "",
            (false, true) => ", copied",
            (false, false) => ", already there",
        };
        println!(
            "  {:<16} {} ({}{state})",
            c.platform.to_string(),
            c.digest,
            c.source
        );
    }
    for (tag, old) in &r.previous {
        println!("  moved tag {tag} (was {old})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> CreateArgs {
        let mut v = vec!["crossdock", "index", "create"];
        v.extend_from_slice(args);
        match crate::cli::Cli::parse_from(v).command {
            crate::cli::Command::Index(IndexArgs {
                command: IndexCommand::Create(a),
            }) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn target_tag_defaults_to_latest_and_annotations_parse() {
        let p = plan(&parse(&[
            "localhost:5000/app",
            "localhost:5000/app:amd64",
            "oci:/tmp/arm:arm64",
            "--annotation",
            "org.opencontainers.image.source=https://x/y?a=b",
            "--annotation",
            "empty=",
        ]))
        .unwrap();
        assert_eq!(p.tag, "latest");
        assert_eq!(p.target.to_string(), "localhost:5000/app");
        assert_eq!(p.sources[1].to_string(), "oci:/tmp/arm:arm64");
        assert_eq!(
            p.annotations["org.opencontainers.image.source"],
            "https://x/y?a=b"
        );
        assert_eq!(p.annotations["empty"], "");
    }

    #[test]
    fn bad_input_is_named() {
        let d = crate::digest::Digest::sha256_of(b"x");
        let e = plan(&parse(&[&format!("localhost:5000/app@{d}"), "a:1"])).unwrap_err();
        assert!(format!("{e:#}").contains("names a digest"), "{e:#}");
        let e = plan(&parse(&["localhost:5000/app", "a:1", "--annotation", "=v"])).unwrap_err();
        assert!(format!("{e:#}").contains("KEY=VALUE"), "{e:#}");
        let e = plan(&parse(&["localhost:5000/app", "Bad"])).unwrap_err();
        assert!(format!("{e:#}").contains("source \"Bad\""), "{e:#}");
    }
}
