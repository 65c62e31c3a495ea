//! The pages of `docs/clients/`: one per client docs/clients/README.md names, each entry to paste well
//! formed, and each known client's page naming the `clientInfo.name` its waits are chosen by.

use std::path::Path;

use authful_mcp_proxy::server::client_waits::KNOWN;

const PAGES: [&str; 7] = [
    "claude-desktop",
    "claude-code",
    "codex",
    "gemini-cli",
    "cursor",
    "vscode",
    "opencode",
];

fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/clients/{name}.md"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fenced blocks of `lang` in `text`.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    text.split(fence.as_str())
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect()
}

#[test]
fn every_client_has_a_page_with_well_formed_entries() {
    let index = page("README");
    for name in PAGES {
        let text = page(name);
        assert!(
            index.contains(&format!("({name}.md)")),
            "the index links {name}.md"
        );
        assert!(text.contains("authful-mcp-proxy"), "{name}.md has an entry");
        for json in blocks(&text, "json") {
            serde_json::from_str::<serde_json::Value>(json)
                .unwrap_or_else(|e| panic!("{name}.md: a JSON block does not parse: {e}\n{json}"));
        }
    }
}

#[test]
fn each_known_clients_page_names_what_its_waits_are_chosen_by() {
    for known in KNOWN {
        let name = known.label.to_lowercase().replace(' ', "-");
        let text = page(&name);
        assert!(
            text.contains(&format!("`{}", known.name)),
            "{name}.md names clientInfo.name `{}`",
            known.name
        );
    }
}
