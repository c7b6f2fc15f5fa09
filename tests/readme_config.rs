//! The README's configuration table names every `serve` setting with its environment variable,
//! and nothing else: it is checked against the flags clap knows, so it cannot drift.

use std::collections::BTreeSet;

#[test]
fn the_readme_table_matches_the_flags() {
    let readme = include_str!("../README.md");
    let documented: BTreeSet<(String, String)> = readme
        .lines()
        .filter_map(|line| {
            let mut cells = line.split('|').map(str::trim).skip(1);
            let flag = cells.next()?.strip_prefix("`--")?.strip_suffix('`')?;
            let env = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            Some((flag.to_string(), env.to_string()))
        })
        .collect();
    let mut known: BTreeSet<(String, String)> =
        carillon::config_file::settings().into_iter().collect();
    // The one global flag, shared by every subcommand.
    known.insert(("log-format".into(), "CARILLON_LOG_FORMAT".into()));
    let missing: Vec<_> = known.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README table out of date: missing {missing:?}, not a flag {stale:?}"
    );
}
