//! Placement benchmark: `cargo bench -p cluster-placement --bench placement`.
//!
//! Prints Markdown tables: scheduling time for 10,000 instances over 1,000 nodes, and ring
//! balance / movement at P = 256 for bounded-load sticky rendezvous (ours), a virtual-node ring
//! (the `hashring` crate) and plain rendezvous hashing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use cluster_core::{AppName, Labels, Mode, NodeId};
use cluster_placement::ring::{assign_rendezvous, moved};
use cluster_placement::{
    AppSpec, Assignment, NodeInfo, Resources, StrategyKind, VnodeRing, assign_partitions, schedule,
};

const SEEDS: usize = 200;

type Mapping<'a> = &'a dyn Fn(&[NodeId], Option<&[NodeId]>) -> Vec<NodeId>;
const P: u32 = 256;

fn main() {
    placement_table();
    ring_table();
}

fn nodes(count: usize) -> Vec<NodeInfo> {
    (0..count)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("zone", format!("z{}", i % 10)),
                (
                    "tier",
                    if i % 4 == 0 { "storage" } else { "compute" }.to_string(),
                ),
            ])
            .unwrap();
            NodeInfo::new(NodeId::new(format!("node-{i:04}")).unwrap(), labels)
                .with_capacity(Resources::parse("32", "128Gi", "").unwrap())
        })
        .collect()
}

fn apps(count: usize, replicas: u32, strategy: StrategyKind) -> Vec<AppSpec> {
    (0..count)
        .map(|i| {
            let mut a = AppSpec::new(
                AppName::new(format!("app-{i:05}")).unwrap(),
                Mode::Replicas { n: replicas },
            )
            .with_resources(Resources::parse("250m", "512Mi", "").unwrap())
            .with_strategy(strategy.clone());
            if i % 5 == 0 {
                a = a.with(cluster_placement::model::dsl::on_label("tier", "compute"));
            }
            a
        })
        .collect()
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.unwrap())
}

fn placement_table() {
    let ns = nodes(1000);
    println!("### Scheduling 10,000 instances over 1,000 nodes (best of 3, release build)\n");
    println!("| workload | strategy | time | instances placed | pending |");
    println!("|---|---|---|---|---|");
    for (label, count, reps) in [
        ("1,000 apps × Replicas(10)", 1000usize, 10u32),
        ("10,000 apps × Replicas(1)", 10_000, 1),
    ] {
        for strategy in [
            StrategyKind::SpreadEvenly,
            StrategyKind::BinPack,
            StrategyKind::zone_aware(),
        ] {
            let specs = apps(count, reps, strategy.clone());
            let (d, r) = time(3, || schedule(&ns, &specs, &Assignment::new()));
            let placed: usize = r.assignment.apps.values().map(|p| p.nodes.len()).sum();
            println!(
                "| {label} (fresh) | {strategy:?} | {:.1} ms | {placed} | {} |",
                d.as_secs_f64() * 1e3,
                r.pending.len()
            );
            if matches!(strategy, StrategyKind::SpreadEvenly) {
                let cur = r.assignment;
                let (d2, r2) = time(3, || schedule(&ns, &specs, &cur));
                println!(
                    "| {label} (re-schedule, no change) | {strategy:?} | {:.1} ms | {} | {} |",
                    d2.as_secs_f64() * 1e3,
                    r2.assignment
                        .apps
                        .values()
                        .map(|p| p.nodes.len())
                        .sum::<usize>(),
                    r2.migrations.len()
                );
            }
        }
    }
    let ring = vec![AppSpec::new(
        AppName::new("ring").unwrap(),
        Mode::Ring { partitions: 4096 },
    )];
    let (d, _) = time(3, || schedule(&ns, &ring, &Assignment::new()));
    println!(
        "| 1 app × Ring(4096) on 1,000 nodes | bounded HRW | {:.1} ms | 1000 | 0 |\n",
        d.as_secs_f64() * 1e3
    );
}

struct Stats {
    balance: Vec<f64>,
    join: Vec<f64>,
    leave: Vec<f64>,
}

impl Stats {
    fn new() -> Self {
        Self {
            balance: Vec::new(),
            join: Vec::new(),
            leave: Vec::new(),
        }
    }
}

fn max_over_avg(map: &[NodeId], members: &[NodeId]) -> f64 {
    let max = members
        .iter()
        .map(|m| map.iter().filter(|o| *o == m).count())
        .max()
        .unwrap_or(0);
    max as f64 / (map.len() as f64 / members.len() as f64)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn p95(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[(s.len() * 95 / 100).min(s.len() - 1)]
}

fn ring_table() {
    println!(
        "### Ring P = {P}: balance (max/avg partitions per node) and movement, mean / p95 over {SEEDS} membership seeds\n"
    );
    println!(
        "Movement is the fraction of partitions that change owner, divided by the ideal (1/(N+1) on a join, 1/N on a leave of the middle node).\n"
    );
    println!("| N | mapping | balance mean / p95 | join moved / ideal | leave moved / ideal |");
    println!("|---|---|---|---|---|");
    for n in [3usize, 5, 10] {
        let algos: [(&str, Mapping<'_>); 4] = [
            ("bounded-load sticky HRW (ours)", &|m, cur| {
                assign_partitions(m, P, cur)
            }),
            ("hashring vnode ring, 150 vnodes", &|m, _| {
                VnodeRing::new(m, 150).assign_partitions(P)
            }),
            ("hashring vnode ring, 256 vnodes", &|m, _| {
                VnodeRing::new(m, 256).assign_partitions(P)
            }),
            ("plain rendezvous (HRW)", &|m, _| assign_rendezvous(m, P)),
        ];
        for (name, algo) in algos {
            let mut st = Stats::new();
            for seed in 0..SEEDS {
                let members: Vec<NodeId> = (0..n)
                    .map(|i| NodeId::new(format!("s{seed}-node-{i}")).unwrap())
                    .collect();
                let map = algo(&members, None);
                st.balance.push(max_over_avg(&map, &members));
                let mut joined = members.clone();
                joined.push(NodeId::new(format!("s{seed}-joiner")).unwrap());
                let after = algo(&joined, Some(&map));
                let ideal_join = f64::from(P) / (n as f64 + 1.0);
                st.join.push(moved(&map, &after) as f64 / ideal_join);
                let gone = &members[n / 2];
                let rest: Vec<NodeId> = members.iter().filter(|m| *m != gone).cloned().collect();
                let after = algo(&rest, Some(&map));
                let ideal_leave = f64::from(P) / n as f64;
                st.leave.push(moved(&map, &after) as f64 / ideal_leave);
            }
            println!(
                "| {n} | {name} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} / {:.3} |",
                mean(&st.balance),
                p95(&st.balance),
                mean(&st.join),
                p95(&st.join),
                mean(&st.leave),
                p95(&st.leave),
            );
        }
    }
    println!(
        "\nIdeal balance ⌈P/N⌉/(P/N): N=3 {:.3}, N=5 {:.3}, N=10 {:.3}.",
        86.0 / (256.0 / 3.0),
        52.0 / (256.0 / 5.0),
        26.0 / 25.6
    );
}
