//! What README.md shows works as shown: its configuration validates, its desktop entries are
//! JSON a client reads, and every command and flag of its table exists.

use std::path::Path;

use crate::support::binary::BIN;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The fenced blocks of `language`.
fn blocks(text: &str, language: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(tag)) if tag.trim() == language => current = Some(String::new()),
            (Some(block), Some(_)) => {
                found.push(std::mem::take(block));
                current = None;
            }
            (Some(block), None) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    found
}

#[test]
fn the_readmes_configuration_validates_strictly() {
    let yaml = blocks(&readme(), "yaml");
    assert!(!yaml.is_empty());
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in yaml.iter().enumerate() {
        let name = format!("readme-{i}.yaml");
        std::fs::write(dir.path().join(&name), block).unwrap();
        let run = std::process::Command::new(BIN)
            .env_clear()
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .args(["validate", "--strict", &name])
            .output()
            .unwrap();
        assert_eq!(
            run.status.code(),
            Some(0),
            "{name}:\n{block}\n{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

#[test]
fn the_readmes_desktop_entries_start_the_proxy() {
    let json = blocks(&readme(), "json");
    assert!(!json.is_empty());
    for block in json {
        let entry: serde_json::Value = serde_json::from_str(&block).expect(&block);
        let servers = entry["mcpServers"]
            .as_object()
            .expect("an mcpServers entry");
        for (name, server) in servers {
            assert_eq!(server["command"], "authful-mcp-proxy", "{name}");
        }
    }
}

#[test]
fn every_command_and_flag_of_the_readme_exists() {
    let text = readme();
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "## Commands")
        .take_while(|l| !l.starts_with("## Documentation"))
        .filter(|l| l.starts_with("| `authful-mcp-proxy"))
        .collect();
    assert!(table.len() >= 6, "{table:?}");
    for row in table {
        let invocation = row.split('`').nth(1).unwrap_or_default();
        let sub = invocation
            .split_whitespace()
            .nth(1)
            .filter(|w| !w.starts_with('['));
        let mut help = std::process::Command::new(BIN);
        help.args(sub).arg("--help");
        let out = help.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{invocation}");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        for flag in row
            .split('`')
            .skip(2)
            .flat_map(|part| part.split(|c: char| c.is_whitespace() || c == '('))
            .filter(|word| word.starts_with("--"))
        {
            let flag = flag.trim_end_matches([',', ')', ':', ';']);
            assert!(help.contains(flag), "{invocation} has no {flag}:\n{help}");
        }
    }
}
