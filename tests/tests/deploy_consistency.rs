//! The three lists of Lambda functions agree: the crates under `functions/` in the root
//! `Cargo.toml`, the Makefile's `FUNCTIONS` (what `make build` and `make package` build)
//! and the `AWS::Serverless::Function` resources of `template.yaml` (what `sam build`
//! builds and deploys). A crate added without a template entry would build and never
//! deploy; one missing from `FUNCTIONS` would deploy but never be sized by `make package`.
//! Every template function must also have what the deployment relies on: the cargo-lambda
//! build method, provided.al2023 on arm64, its own log group with a retention, and a policy.
//!
//! No YAML or TOML crate is in the dependency tree, and these files are ours, so they are
//! read with a small indentation parser (`Node`) under simple rules, each stated where used.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// One YAML line with the lines indented under it. A `key: value` line has both; a list
/// item `- x` is key `-` with value `x`, and `- key: value` is key `-` with one child
/// `key: value` (and its siblings) so list items of mappings read like mappings.
#[derive(Debug, Default)]
struct Node {
    key: String,
    value: String,
    children: Vec<Node>,
}

impl Node {
    fn parse(text: &str) -> Node {
        // (indent, key, value) for each line that is not blank or a whole-line comment.
        let mut lines = Vec::new();
        for raw in text.lines() {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = raw.len() - trimmed.len();
            if let Some(rest) = trimmed.strip_prefix("- ") {
                if rest.contains(": ") || rest.ends_with(':') {
                    lines.push((indent, "-".to_owned(), String::new()));
                    lines.push(Self::entry(indent + 2, rest));
                } else {
                    lines.push((indent, "-".to_owned(), strip_comment(rest).to_owned()));
                }
            } else {
                lines.push(Self::entry(indent, trimmed));
            }
        }
        let mut root = Node::default();
        let mut at = 0;
        root.children = Self::children(&lines, &mut at, 0);
        root
    }

    /// `key: value`, or the whole line as the key when it is not one (folded text).
    fn entry(indent: usize, item: &str) -> (usize, String, String) {
        let item = strip_comment(item);
        match item.split_once(':').filter(|(k, _)| !k.contains(' ')) {
            Some((k, v)) if !k.starts_with(['"', '\'', '{', '[', '!']) => {
                (indent, k.to_owned(), v.trim().to_owned())
            }
            _ => (indent, item.to_owned(), String::new()),
        }
    }

    fn children(lines: &[(usize, String, String)], at: &mut usize, indent: usize) -> Vec<Node> {
        let mut out = Vec::new();
        while let Some((i, key, value)) = lines.get(*at) {
            if *i < indent {
                break;
            }
            *at += 1;
            let deeper = lines.get(*at).map_or(0, |(next, _, _)| *next);
            let children = if deeper > *i {
                Self::children(lines, at, deeper)
            } else {
                Vec::new()
            };
            out.push(Node {
                key: key.clone(),
                value: value.clone(),
                children,
            });
        }
        out
    }

    fn get(&self, key: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.key == key)
    }

    fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    /// A list's items: `[a, b]` on the line itself, or `- a` lines under it.
    fn list(&self) -> Vec<String> {
        if let Some(inline) = self
            .value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
        {
            return inline.split(',').map(|v| v.trim().to_owned()).collect();
        }
        self.children
            .iter()
            .filter(|c| c.key == "-")
            .map(|c| c.value.clone())
            .collect()
    }
}

/// Drops a trailing ` # comment` (the template's values hold no " #").
fn strip_comment(line: &str) -> &str {
    line.split_once(" #")
        .map_or(line, |(before, _)| before)
        .trim_end()
}

/// The Makefile's `FUNCTIONS := a b c` (one line, or continued with backslashes).
fn makefile_functions() -> BTreeSet<String> {
    let makefile = read("Makefile");
    let mut lines = makefile.lines();
    let first = lines
        .by_ref()
        .find_map(|l| {
            l.strip_prefix("FUNCTIONS")
                .map(str::trim_start)
                .and_then(|l| l.strip_prefix(":=").or_else(|| l.strip_prefix('=')))
        })
        .expect("the Makefile defines FUNCTIONS");
    let mut words = String::from(first);
    while words.trim_end().ends_with('\\') {
        words = words.trim_end().trim_end_matches('\\').to_owned();
        words.push(' ');
        words.push_str(lines.next().unwrap_or_default());
    }
    words.split_whitespace().map(str::to_owned).collect()
}

/// The package names of the workspace members under `functions/`, which are also their
/// binaries' names (no crate there renames its binary). Both the root `Cargo.toml`'s
/// members and the `functions/*/Cargo.toml` on disk count: a crate that is not a member
/// would not even build.
fn workspace_functions() -> BTreeSet<String> {
    let manifest = read("Cargo.toml");
    let members: BTreeSet<String> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"functions/"))
        .filter_map(|l| l.split_once('"').map(|(dir, _)| dir.to_owned()))
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(root().join("functions"))
        .expect("functions/ exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        members, on_disk,
        "the root Cargo.toml's functions/ members differ from the crates in functions/"
    );
    members
        .iter()
        .map(|dir| {
            let crate_manifest = read(&format!("functions/{dir}/Cargo.toml"));
            assert!(
                !crate_manifest.contains("[[bin]]"),
                "functions/{dir} declares its own [[bin]]; this test assumes binary = package"
            );
            crate_manifest
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|l| l.strip_suffix('"'))
                .unwrap_or_else(|| panic!("functions/{dir}/Cargo.toml has no package name"))
                .to_owned()
        })
        .collect()
}

fn template() -> Node {
    Node::parse(&read("template.yaml"))
}

/// (logical id, binary) of every `AWS::Serverless::Function` resource.
fn template_functions(template: &Node) -> Vec<(String, String)> {
    let resources = template
        .get("Resources")
        .expect("the template has Resources");
    resources
        .children
        .iter()
        .filter(|r| {
            r.get("Type")
                .is_some_and(|t| t.value == "AWS::Serverless::Function")
        })
        .map(|r| {
            let binary = r
                .path(&["Metadata", "BuildProperties", "Binary"])
                .map(|b| b.value.clone())
                .unwrap_or_else(|| panic!("{} has no Metadata.BuildProperties.Binary", r.key));
            (r.key.clone(), binary)
        })
        .collect()
}

/// "only in X: …" lines for two sets that should be equal.
fn differences(
    a_name: &str,
    a: &BTreeSet<String>,
    b_name: &str,
    b: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let only_a: Vec<_> = a.difference(b).collect();
    if !only_a.is_empty() {
        out.push(format!("in {a_name} but not in {b_name}: {only_a:?}"));
    }
    let only_b: Vec<_> = b.difference(a).collect();
    if !only_b.is_empty() {
        out.push(format!("in {b_name} but not in {a_name}: {only_b:?}"));
    }
    out
}

#[test]
fn every_function_is_built_packaged_and_deployed() {
    let crates = workspace_functions();
    let makefile = makefile_functions();
    let template = template();
    let deployed: BTreeSet<String> = template_functions(&template)
        .into_iter()
        .map(|(_, binary)| binary)
        .collect();
    assert!(!crates.is_empty(), "no crates found under functions/");
    let mut problems = differences(
        "functions/ crates",
        &crates,
        "Makefile FUNCTIONS",
        &makefile,
    );
    problems.extend(differences(
        "functions/ crates",
        &crates,
        "template.yaml functions",
        &deployed,
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_template_function_has_what_the_deployment_relies_on() {
    let template = template();
    let globals = template.path(&["Globals", "Function"]);
    let resources = template
        .get("Resources")
        .expect("the template has Resources");
    let mut problems = Vec::new();
    for (id, _) in template_functions(&template) {
        let function = resources.get(&id).expect("listed from Resources");
        let properties = function.get("Properties");
        // A function's own property, else the Globals' one.
        let setting = |key: &str| {
            properties
                .and_then(|p| p.get(key))
                .or_else(|| globals.and_then(|g| g.get(key)))
        };
        let build = function.path(&["Metadata", "BuildMethod"]);
        if build.map(|b| b.value.as_str()) != Some("rust-cargolambda") {
            problems.push(format!(
                "{id}: Metadata.BuildMethod is not rust-cargolambda"
            ));
        }
        if setting("Runtime").map(|r| r.value.as_str()) != Some("provided.al2023") {
            problems.push(format!("{id}: Runtime is not provided.al2023"));
        }
        if setting("Architectures").map(Node::list) != Some(vec!["arm64".to_owned()]) {
            problems.push(format!("{id}: Architectures is not [arm64]"));
        }
        if setting("Handler").map(|h| h.value.as_str()) != Some("bootstrap") {
            problems.push(format!(
                "{id}: Handler is not bootstrap (cargo-lambda's file name)"
            ));
        }
        // Its own policy: an inline statement list, not a shared role.
        let policies = properties.and_then(|p| p.get("Policies"));
        if policies.is_none_or(|p| p.children.is_empty())
            || properties.is_some_and(|p| p.get("Role").is_some())
        {
            problems.push(format!("{id}: no Policies of its own"));
        }
        // Its own log group, with a retention.
        let group = properties
            .and_then(|p| p.path(&["LoggingConfig", "LogGroup"]))
            .and_then(|g| g.value.strip_prefix("!Ref "));
        match group.and_then(|g| resources.get(g)) {
            None => problems.push(format!(
                "{id}: LoggingConfig.LogGroup is not a !Ref to a resource"
            )),
            Some(g) => {
                if g.get("Type").map(|t| t.value.as_str()) != Some("AWS::Logs::LogGroup") {
                    problems.push(format!(
                        "{id}: its log group {} is not an AWS::Logs::LogGroup",
                        g.key
                    ));
                }
                if g.path(&["Properties", "RetentionInDays"]).is_none() {
                    problems.push(format!(
                        "{id}: its log group {} has no RetentionInDays",
                        g.key
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `sam local start-api --env-vars deploy/env.local.json` only overrides variables the
/// template declares, and leaves the rest at values that only mean something in AWS (a
/// table's logical id), so the file must name every variable of every function.
#[test]
fn the_local_env_file_covers_every_function_variable() {
    let env: serde_json::Value = serde_json::from_str(&read("deploy/env.local.json"))
        .expect("deploy/env.local.json is JSON");
    let template = template();
    let resources = template
        .get("Resources")
        .expect("the template has Resources");
    let mut problems = Vec::new();
    for (id, _) in template_functions(&template) {
        let function = resources.get(&id).expect("listed from Resources");
        let declared = function
            .path(&["Properties", "Environment", "Variables"])
            .map(|v| v.children.iter().map(|c| c.key.clone()).collect::<Vec<_>>())
            .unwrap_or_default();
        for name in declared {
            if env.get(&id).and_then(|f| f.get(&name)).is_none() {
                problems.push(format!("deploy/env.local.json: {id} has no {name}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_parser_reads_what_the_tests_rely_on() {
    let node = Node::parse(
        "A:\n  B: x # note\n  C: [arm64]\n  D:\n    - one\n    - key: v\n      other: w\n# c\nE: y\n",
    );
    assert_eq!(node.path(&["A", "B"]).unwrap().value, "x");
    assert_eq!(node.path(&["A", "C"]).unwrap().list(), vec!["arm64"]);
    let d = node.path(&["A", "D"]).unwrap();
    assert_eq!(d.list()[0], "one");
    assert_eq!(d.children[1].get("other").unwrap().value, "w");
    assert_eq!(node.get("E").unwrap().value, "y");
}

#[test]
fn every_rate_limit_is_documented_with_its_default() {
    let api = read("docs/API.md");
    let section = &api[api
        .find("### Rate limits")
        .expect("docs/API.md has a Rate limits section")..];
    let documented: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let mut cells = l.split(" | ");
            let name = cells.next()?.trim_end_matches('`');
            let default = cells.nth(1)?.trim_end_matches(" |");
            Some(format!("{name}={default}"))
        })
        .collect();
    let in_code: BTreeSet<String> = cinder_server::limits::TABLE
        .iter()
        .map(|(name, _, default)| format!("{name}={default}"))
        .collect();
    assert_eq!(
        documented, in_code,
        "docs/API.md's rate limits differ from the code's"
    );
}
