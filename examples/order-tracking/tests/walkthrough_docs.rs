//! The showcase's written walkthrough stays true (issue 18, item 7): the root README's showcase
//! section and the shop's README run the release build the README already built, never a second
//! debug build, and send Alice to her order list to open M-1001, which the browser test
//! (`tests/js/test/order-tracking.test.js`, "the README walkthrough") then does step by step.

use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The part of `text` from `heading` to the next heading of the same level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let level = heading.split(' ').next().unwrap();
    let rest = &text[start + heading.len()..];
    let end = rest
        .find(&format!("\n{level} "))
        .map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

fn run_commands(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            l.contains("cargo run")
                && (l.contains("order-tracking") || l.contains("vestnik-server"))
        })
        .collect()
}

#[test]
fn the_showcase_runs_the_release_build_and_its_walkthrough_names_the_order_list() {
    let root = read("../../README.md");
    let showcase = section(&root, "## Showcase: live order tracking");
    let shop = read("README.md");
    let local = section(&shop, "## Run it locally (no Docker)");
    for (name, text) in [("README.md showcase", showcase), ("shop README", local)] {
        let commands = run_commands(text);
        assert!(!commands.is_empty(), "{name}: no run command");
        for c in commands {
            assert!(
                c.contains("--release"),
                "{name}: {c:?} builds a second, debug binary"
            );
        }
        assert!(
            text.contains("M-1001"),
            "{name}: the walkthrough names M-1001"
        );
        assert!(
            text.contains("Алиса Петрова"),
            "{name}: the walkthrough signs in as Alice"
        );
    }
    assert!(
        local.contains("she lands on her orders") && showcase.contains("she lands on her orders"),
        "the walkthrough says where Alice lands, so M-1001 can be found"
    );
}
