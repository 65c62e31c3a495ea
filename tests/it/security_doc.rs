//! SECURITY.md names, for every rule, the test that proves it (and docs/protocol-eras.md, for
//! every case): each name must be a test that exists, so that a document cannot point at a test
//! that was renamed or removed.

use std::path::Path;

/// Test names in SECURITY.md: `module::name`, or `…::name` for the module named before it on
/// the same line; `module::tests::name` for unit tests in `src/`.
fn named_tests(text: &str) -> Vec<(String, String)> {
    let mut named = Vec::new();
    for line in text.lines() {
        let mut module = String::new();
        for quoted in line.split('`').skip(1).step_by(2) {
            let Some((path, name)) = quoted.rsplit_once("::") else {
                continue;
            };
            let is_name = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            };
            if !is_name(name) {
                continue;
            }
            if path != "…" {
                module = path.to_owned();
            }
            if !module.is_empty() {
                named.push((module.clone(), name.to_owned()));
            }
        }
    }
    named
}

#[test]
fn every_test_security_md_names_exists() {
    every_named_test_exists("SECURITY.md", 20);
}

#[test]
fn every_test_the_protocol_page_names_exists() {
    every_named_test_exists("docs/protocol-eras.md", 8);
}

/// Each test `document` names exists; it names `at_least` of them.
fn every_named_test_exists(document: &str, at_least: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(document)).unwrap();
    let named = named_tests(&text);
    assert!(named.len() >= at_least, "{named:?}");
    for (module, name) in named {
        let file = match module.strip_suffix("::tests") {
            Some(source) => root
                .join("src")
                .join(format!("{}.rs", source.replace("::", "/"))),
            None => root.join("tests/it").join(format!("{module}.rs")),
        };
        let code = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{module}::{name}: {}: {e}", file.display()));
        assert!(
            code.contains(&format!("fn {name}()")),
            "{document} names {module}::{name}, which {} does not define",
            file.display()
        );
    }
}
