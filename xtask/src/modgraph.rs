//! The import graph of `cluster-runtime`'s top-level modules, and the layering rules checked on
//! it (`cargo xtask deps-check`).
//!
//! A module is a top-level file `src/{m}.rs` or a directory `src/{m}/`; an edge `a → b` is a
//! `crate::b` or `super::b` path in `a`'s non-test code (everything before its first
//! `#[cfg(test)]`). Rules:
//! * **Foundation modules** ([`FOUNDATION`]) import only foundation modules: the node's
//!   services, counters, queues, panic isolation, audit emission, the lease election and KV lock
//!   never reach into apps or the platform, so they can be understood and tested alone.
//! * **No cycle grows**: the largest strongly connected component (modules that import each
//!   other in a cycle) has at most [`MAX_CYCLE`] modules. This is a ratchet on known debt
//!   (`docs/architecture/cluster-runtime.md`, "Known debt"): lower it whenever a change breaks
//!   a cycle, never raise it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Modules that must import only each other (see the module docs).
pub(crate) const FOUNDATION: &[&str] = &[
    "admin_client",
    "audit",
    "audit_query",
    "bounded",
    "election",
    "isolate",
    "jitter",
    "kv_lock",
    "lease",
    "lease_view",
    "locks",
    "member_claim",
    "metrics",
    "node",
    "options",
    "schedule",
    "stats",
    "sync",
];

/// The largest allowed import cycle among top-level modules (ratchet; see the module docs).
pub(crate) const MAX_CYCLE: usize = 18;

/// Module name → the modules it imports.
pub(crate) type Graph = BTreeMap<String, BTreeSet<String>>;

/// Reads the graph of the crate whose `src` directory is `src`.
pub(crate) fn read(src: &Path) -> Result<Graph> {
    let mut files: BTreeMap<String, Vec<std::path::PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        if path.is_dir() {
            files.insert(stem, rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") && stem != "lib" {
            files.insert(stem, vec![path]);
        }
    }
    let names: BTreeSet<String> = files.keys().cloned().collect();
    let mut graph = Graph::new();
    for (module, paths) in &files {
        let mut targets = BTreeSet::new();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            targets.extend(imports(&text, &names).filter(|t| t != module));
        }
        graph.insert(module.clone(), targets);
    }
    Ok(graph)
}

fn rust_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(out)
}

/// The top-level modules (among `names`) that `text` refers to as `crate::m` or `super::m`,
/// ignoring its test code.
fn imports<'a>(text: &'a str, names: &'a BTreeSet<String>) -> impl Iterator<Item = String> + 'a {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    ["crate::", "super::"].into_iter().flat_map(move |prefix| {
        code.match_indices(prefix).filter_map(move |(at, _)| {
            let rest = &code[at + prefix.len()..];
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.contains(&ident).then_some(ident)
        })
    })
}

/// The strongly connected components with more than one module, largest first.
pub(crate) fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.graph.contains_key(w) {
                    continue;
                }
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    if let Some(lv) = self.low.get_mut(v) {
                        *lv = (*lv).min(lw);
                    }
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    if let Some(lv) = self.low.get_mut(v) {
                        *lv = (*lv).min(iw);
                    }
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out.sort_by_key(|c| std::cmp::Reverse(c.len()));
    t.out
}

/// Every violation of the rules (see the module docs), as messages.
pub(crate) fn violations(graph: &Graph, foundation: &[&str], max_cycle: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for module in foundation {
        for target in graph.get(*module).into_iter().flatten() {
            if !foundation.contains(&target.as_str()) {
                problems.push(format!(
                    "foundation module `{module}` imports `{target}` (foundation modules import \
                     only {})",
                    foundation.join(", ")
                ));
            }
        }
    }
    if let Some(largest) = cycles(graph).first()
        && largest.len() > max_cycle
    {
        problems.push(format!(
            "{} modules import each other in a cycle (at most {max_cycle} allowed): {}",
            largest.len(),
            largest.join(", ")
        ));
    }
    problems
}

/// Checks `cluster-runtime` (see the module docs).
pub(crate) fn check(root: &Path) -> Result<()> {
    println!("==> cluster-runtime module layering check");
    let graph = read(&root.join("crates/cluster-runtime/src"))?;
    let problems = violations(&graph, FOUNDATION, MAX_CYCLE);
    if !problems.is_empty() {
        bail!(
            "cluster-runtime module layering:\n  {}",
            problems.join("\n  ")
        );
    }
    let largest = cycles(&graph).first().map_or(0, Vec::len);
    println!(
        "    ok: {} modules, foundation layer clean, largest cycle {largest} (limit {MAX_CYCLE})",
        graph.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        edges
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    #[test]
    fn finds_imports_outside_tests_only() {
        let names: BTreeSet<String> = ["app", "sync", "platform"].map(String::from).into();
        let text = "use crate::sync::locked;\nuse super::app::App;\nfn f() { crate::sync_x(); }\n\
                    #[cfg(test)]\nmod tests { use crate::platform::Shared; }";
        let found: BTreeSet<String> = imports(text, &names).collect();
        assert_eq!(found, ["app", "sync"].map(String::from).into());
    }

    #[test]
    fn a_planted_foundation_violation_and_a_grown_cycle_are_reported() {
        let g = graph(&[
            ("sync", &[]),
            ("node", &["sync"]),
            ("app", &["node", "platform"]),
            ("platform", &["app", "rpc"]),
            ("rpc", &["platform"]),
        ]);
        assert!(violations(&g, &["sync", "node"], 3).is_empty());
        assert_eq!(cycles(&g), vec![vec!["app", "platform", "rpc"]]);
        let planted = graph(&[
            ("sync", &["app"]),
            ("node", &["sync"]),
            ("app", &["node", "platform"]),
            ("platform", &["app", "rpc"]),
            ("rpc", &["platform"]),
        ]);
        let v = violations(&planted, &["sync", "node"], 3);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("`sync` imports `app`"), "{v:?}");
        assert!(v[1].contains("5 modules"), "{v:?}");
    }
}
