//! Reading deploy/Dockerfile for the tests: the instructions of its final stage (the runtime
//! image), with line continuations joined and comments dropped, and what they declare —
//! entrypoint, cmd, user, port, stop signal, labels (with the stage's `ARG` defaults
//! substituted). Enough Dockerfile syntax for this file, not a general parser: an instruction
//! this file does not use fails the test that asks for it rather than being misread.
//! Shared by tests/deploy.rs and tests/image.rs, which each use part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// The final stage of a Dockerfile.
pub(crate) struct Dockerfile {
    /// (INSTRUCTION, rest of the line), in order, from the last `FROM` on.
    instructions: Vec<(String, String)>,
}

impl Dockerfile {
    pub(crate) fn parse(text: &str) -> Dockerfile {
        let mut lines = Vec::new();
        let mut pending = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || trimmed.is_empty() {
                continue;
            }
            if let Some(head) = trimmed.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(trimmed);
            lines.push(std::mem::take(&mut pending));
        }
        let start = lines
            .iter()
            .rposition(|l| l.starts_with("FROM "))
            .expect("the Dockerfile has a FROM");
        let instructions = lines[start..]
            .iter()
            .map(|l| {
                let (name, rest) = l.split_once(' ').unwrap_or((l, ""));
                (name.to_ascii_uppercase(), rest.trim().to_string())
            })
            .collect();
        Dockerfile { instructions }
    }

    /// The argument of the last `name` instruction of the final stage.
    pub(crate) fn last(&self, name: &str) -> &str {
        self.instructions
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, rest)| rest.as_str())
            .unwrap_or_else(|| panic!("the Dockerfile's final stage has no {name}"))
    }

    /// An exec-form (JSON array) instruction: `ENTRYPOINT`, `CMD`.
    pub(crate) fn exec(&self, name: &str) -> Vec<String> {
        serde_json::from_str(self.last(name))
            .unwrap_or_else(|e| panic!("{name} in exec form (no shell in the image): {e}"))
    }

    /// The defaults of the final stage's `ARG NAME=VALUE` instructions.
    pub(crate) fn args(&self) -> BTreeMap<String, String> {
        self.all("ARG")
            .filter_map(|a| a.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect()
    }

    /// Every `LABEL key="value"` of the final stage, `${ARG}` replaced by the ARG's default.
    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        let args = self.args();
        let mut labels = BTreeMap::new();
        for line in self.all("LABEL") {
            for (key, value) in label_pairs(line) {
                let value = args.iter().fold(value, |v, (name, default)| {
                    v.replace(&format!("${{{name}}}"), default)
                });
                labels.insert(key, value);
            }
        }
        labels
    }

    /// `EXPOSE 9090` as the image config writes it: `9090/tcp`.
    pub(crate) fn exposed_ports(&self) -> Vec<String> {
        self.all("EXPOSE")
            .flat_map(str::split_whitespace)
            .map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            })
            .collect()
    }

    /// The destination of the `COPY` that brings in `file`.
    pub(crate) fn copy_destination(&self, file: &str) -> &str {
        self.all("COPY")
            .find_map(|c| {
                let mut words = c.split_whitespace().filter(|w| !w.starts_with("--"));
                (words.next()?.ends_with(file))
                    .then(|| words.next())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no COPY of {file} in the final stage"))
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.instructions
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, rest)| rest.as_str())
    }
}

/// `a="x y" b=z` → [(a, "x y"), (b, z)]; `\"` inside quotes is a quote.
fn label_pairs(line: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|&c| c != '=')).collect();
        if key.is_empty() {
            return pairs;
        }
        assert_eq!(chars.next(), Some('='), "LABEL {key} without a value");
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())));
        }
        pairs.push((key.trim().to_string(), value));
    }
}
