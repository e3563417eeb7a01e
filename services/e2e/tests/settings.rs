//! Every setting is written down where a reader looks for it: in the doc
//! table of the module that declares it, and in the README's settings
//! table; and neither lists one that nothing reads.

#![allow(clippy::unwrap_used)]

use clap::CommandFactory;
use e2e::{LIBRARY_VARIABLES, variables_read};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use testkit::compose::workspace;

/// Every variable both binaries read on their command lines.
fn read_by_the_binaries() -> BTreeSet<String> {
    let mut names = variables_read(&importer::settings::Cli::command());
    names.extend(variables_read(&transformer::settings::Cli::command()));
    names
}

fn rust_sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Variable -> the source file whose `#[arg(env = ...)]` declares it.
fn declarations() -> BTreeMap<String, PathBuf> {
    let services = workspace().join("services");
    let mut files = Vec::new();
    for krate in ["core", "store", "importer", "transformer"] {
        rust_sources(&services.join(krate).join("src"), &mut files);
    }
    let mut declared = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for piece in text.split("env = \"").skip(1) {
            let name = piece.split('"').next().unwrap().to_owned();
            declared.insert(name, file.clone());
        }
    }
    declared
}

#[test]
fn every_variable_is_in_the_doc_table_of_the_module_that_declares_it() {
    let declared = declarations();
    let read = read_by_the_binaries();
    assert!(read.len() > 20, "{read:?}");
    for name in &read {
        let file = declared
            .get(name)
            .unwrap_or_else(|| panic!("no `env = \"{name}\"` found under services/*/src"));
        let text = std::fs::read_to_string(file).unwrap();
        let in_table = text
            .lines()
            .filter_map(|line| line.strip_prefix("//! |"))
            .any(|row| row.trim_start().starts_with(&format!("`{name}`")));
        assert!(
            in_table,
            "{name} is declared in {} but not in its module doc's table",
            file.display()
        );
    }
}

#[test]
fn the_readme_settings_table_lists_every_variable_and_no_other() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = readme
        .split("\n## Settings\n")
        .nth(1)
        .expect("the README has a Settings section");
    let section = section.split("\n## ").next().unwrap();
    let listed: BTreeSet<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| {
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        })
        .map(str::to_owned)
        .collect();
    let read = read_by_the_binaries();
    let missing: Vec<&String> = read.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "the README's settings table lacks {missing:?}"
    );
    let stale: Vec<&String> = listed
        .iter()
        .filter(|name| !read.contains(*name) && !LIBRARY_VARIABLES.contains(&name.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "the README lists {stale:?}, which nothing reads"
    );
}
