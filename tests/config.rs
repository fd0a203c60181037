//! The daemon's configuration as a user meets it: good files become the expected plan, the
//! environment overrides what it should, bad files are refused with every problem at once (key
//! path, line and column, nearest valid key), secrets stay out of errors and Debug output, shards
//! split the rules exactly, and tag selection works against a real registry with many tags.
//!
//! One test binary; the tests live in `config/`, one file per concept. This file holds what they
//! share: a folder to write files into and loading a file with a given environment.

mod support;

#[path = "config/credentials.rs"]
mod credentials;
#[path = "config/plan.rs"]
mod plan;
#[path = "config/problems.rs"]
mod problems;
#[path = "config/reference.rs"]
mod reference;
#[path = "config/tag_selection.rs"]
mod tag_selection;

use std::path::{Path, PathBuf};

use crossdock::config::{self, ConfigErrors, Plan};

/// A folder with a config file (and whatever else a test puts next to it).
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Plan, ConfigErrors> {
    let d = Dir::new();
    let p = d.write("crossdock.toml", text);
    config::load_with_env(&p, env(vars))
}

fn errors(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match load(text, vars) {
        Ok(_) => panic!("expected configuration errors"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

const MINIMAL: &str = r#"
[[rules]]
name = "alpine"
source = "localhost:5000/library/alpine"
target = "localhost:5001/mirror/{repo}"
tags = ["latest"]
"#;
