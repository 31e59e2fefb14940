//! The crate's modules are layered as `docs/ARCHITECTURE.md` draws them: each top-level
//! module of `src/` (a file, or a folder with its children) uses only modules listed above it,
//! and exactly those its row names. Read from the source's `crate::` paths (test code
//! aside), so a new upward import, or a table that no longer says what the code does, fails
//! here, in `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Top-level module -> the top-level modules its code names through `crate::`.
fn crate_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
            // The crate root and the binary sit above everything by design.
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let uses = graph.entry(module.clone()).or_default();
            uses.extend(crate_references(&text).into_iter().filter(|m| *m != module));
        }
    }
    graph
}

/// The first segment of every `crate::` path outside comments, `crate::{a, b::c}` included,
/// up to the file's unit tests (a `#[cfg(test)]` line).
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]")
            || line.trim_start().starts_with("#[cfg(all(test")
        {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name = item.trim().split("::").next().unwrap_or("").trim();
                    if !name.is_empty() {
                        found.insert(name.to_owned());
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The table of `docs/ARCHITECTURE.md`'s "The modules, bottom up": each module and what its
/// row says it uses, in the table's order.
fn documented_layers() -> Vec<(String, BTreeSet<String>)> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
            .unwrap();
    let section = doc
        .split("## The modules, bottom up")
        .nth(1)
        .expect("the section")
        .split("\n## ")
        .next()
        .unwrap();
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split(',')
            .map(|n| n.trim().trim_matches('`').to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    };
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.strip_prefix("| `")?.split(" | ").collect();
            let module = cells[0].strip_suffix('`')?.to_owned();
            let uses = cells.get(2).map_or("", |c| c.trim_end_matches('|').trim());
            Some((module, names(uses)))
        })
        .collect()
}

#[test]
fn the_modules_are_layered_as_the_architecture_documents_them() {
    let graph = crate_graph();
    let layers = documented_layers();
    let documented: BTreeSet<&String> = layers.iter().map(|(m, _)| m).collect();
    let actual: BTreeSet<&String> = graph.keys().collect();
    assert_eq!(
        documented, actual,
        "the table lists exactly the modules of src/"
    );
    for (at, (module, uses)) in layers.iter().enumerate() {
        assert_eq!(&graph[module], uses, "what `{module}` uses, in the table");
        for used in uses {
            let below = layers[..at].iter().any(|(m, _)| m == used);
            assert!(
                below,
                "`{module}` uses `{used}`, which is not listed above it"
            );
        }
    }
}

#[test]
fn the_crate_s_modules_form_no_cycle() {
    let graph = crate_graph();
    assert!(graph.len() > 10, "found the modules: {graph:?}");
    assert!(
        graph["routes"].contains("state"),
        "reads the graph: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn only_the_binary_and_the_crate_root_use_startup() {
    let users: Vec<_> = crate_graph()
        .into_iter()
        .filter(|(_, uses)| uses.contains("startup"))
        .map(|(module, _)| module)
        .collect();
    assert!(users.is_empty(), "modules using startup: {users:?}");
}

#[test]
fn the_check_finds_a_cycle_and_reads_grouped_imports() {
    let refs = crate_references(
        "use crate::{a::B, c};\nuse crate::d::E; // crate::not_this\nlet x = crate::f::g();",
    );
    assert_eq!(refs, ["a", "c", "d", "f"].map(String::from).into());
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_owned()].into());
    graph.insert("b".into(), ["c".to_owned()].into());
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
    graph.get_mut("c").unwrap().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(["a", "b", "c", "a"].map(String::from).to_vec())
    );
}
