//! `[apps.placement]` and `[apps.vip]`: placement rules and virtual IPs of declared apps.

use cluster::placement::{Constraint, NamedStrategy, PlacementSpec, Preference, Resources};
use cluster::{AppName, Mode, NodeId};
use toml::{Table, Value};

use super::VipConfig;
use super::load::{Reader, path, type_name};

/// Weight of a preference written without one.
const DEFAULT_WEIGHT: u32 = 10;

const PLACEMENT_KEYS: &[&str] = &[
    "on_label",
    "avoid_label",
    "on_nodes",
    "with_app",
    "away_from_app",
    "prefer_label",
    "prefer_node",
    "resources",
    "strategy",
    "zone_key",
    "standbys",
];

impl Reader {
    /// Reads `[apps.placement]`.
    pub(super) fn placement(&mut self, t: &Table, p: &str, mode: Option<Mode>) -> PlacementSpec {
        self.known_keys(t, p, PLACEMENT_KEYS);
        let mut spec = PlacementSpec {
            v: 1,
            ..PlacementSpec::default()
        };
        for (key, value) in self.label_pairs(t, p, "on_label") {
            spec.constraints.push(Constraint::OnLabel { key, value });
        }
        for (key, value) in self.label_pairs(t, p, "avoid_label") {
            spec.constraints.push(Constraint::AvoidLabel { key, value });
        }
        if t.contains_key("on_nodes") {
            let nodes: Vec<NodeId> = self
                .strings(t, p, "on_nodes")
                .iter()
                .filter_map(|n| self.node(n, &path(p, "on_nodes")))
                .collect();
            if nodes.is_empty() {
                self.problem(path(p, "on_nodes"), "list at least one node");
            }
            spec.constraints.push(Constraint::OnNodes { nodes });
        }
        for app in self.app_names(t, p, "with_app") {
            spec.constraints.push(Constraint::WithApp { app });
        }
        for app in self.app_names(t, p, "away_from_app") {
            spec.constraints.push(Constraint::AwayFromApp { app });
        }
        self.prefer_labels(t, p, &mut spec);
        self.prefer_nodes(t, p, &mut spec);
        if let Some(rt) = self.table(t, p, "resources") {
            let rp = path(p, "resources");
            self.known_keys(rt, &rp, &["cpu", "memory", "disk"]);
            let cpu = self.string(rt, &rp, "cpu").unwrap_or_default();
            let memory = self.string(rt, &rp, "memory").unwrap_or_default();
            let disk = self.string(rt, &rp, "disk").unwrap_or_default();
            match Resources::parse(&cpu, &memory, &disk) {
                Ok(r) => spec.resources = r,
                Err(e) => self.problem(rp, e.to_string()),
            }
        }
        let zone_key = self.string(t, p, "zone_key");
        spec.strategy = match self.string(t, p, "strategy").as_deref() {
            None | Some("spread-evenly") | Some("spread_evenly") => NamedStrategy::SpreadEvenly,
            Some("bin-pack") | Some("bin_pack") => NamedStrategy::BinPack,
            Some("zone-aware") | Some("zone_aware") => NamedStrategy::ZoneAware {
                key: zone_key.clone().unwrap_or_else(|| "zone".to_owned()),
            },
            Some(other) => {
                self.problem(
                    path(p, "strategy"),
                    format!(
                        "unknown strategy {other:?}; use spread-evenly, bin-pack or zone-aware"
                    ),
                );
                NamedStrategy::SpreadEvenly
            }
        };
        if zone_key.is_some() && !matches!(spec.strategy, NamedStrategy::ZoneAware { .. }) {
            self.problem(
                path(p, "zone_key"),
                "zone_key applies only to strategy = \"zone-aware\"",
            );
        }
        if let Some(n) = self.int(t, p, "standbys", 0, 1000) {
            if mode.is_some_and(|m| !m.is_singleton()) {
                self.problem(
                    path(p, "standbys"),
                    "standbys applies only to singleton apps",
                );
            }
            spec.standbys = Some(n as u32);
        }
        spec
    }

    fn node(&mut self, n: &str, key: &str) -> Option<NodeId> {
        match NodeId::new(n) {
            Ok(n) => Some(n),
            Err(e) => {
                self.problem(key, e.to_string());
                None
            }
        }
    }

    /// `key = { label = "value", … }`.
    fn label_pairs(&mut self, t: &Table, p: &str, key: &str) -> Vec<(String, String)> {
        let pairs = self.string_map(t, p, key);
        let mut labels = cluster::Labels::new();
        for (k, v) in &pairs {
            if let Err(e) = labels.insert(k.clone(), v.clone()) {
                self.problem(path(&path(p, key), k), e.to_string());
            }
        }
        pairs
    }

    /// A string or an array of strings naming apps.
    fn app_names(&mut self, t: &Table, p: &str, key: &str) -> Vec<AppName> {
        let names = match t.get(key) {
            None => return Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(_) => self.strings(t, p, key),
        };
        names
            .into_iter()
            .filter_map(|n| match AppName::new(&n) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.problem(path(p, key), e.to_string());
                    None
                }
            })
            .collect()
    }

    /// `prefer_label = { zone = "a" }` (weight 10) or
    /// `prefer_label = [{ key = "zone", value = "a", weight = 20 }]`.
    fn prefer_labels(&mut self, t: &Table, p: &str, spec: &mut PlacementSpec) {
        let key = path(p, "prefer_label");
        match t.get("prefer_label") {
            None => {}
            Some(Value::Table(_)) => {
                for (k, value) in self.label_pairs(t, p, "prefer_label") {
                    spec.preferences.push(Preference::PreferLabel {
                        key: k,
                        value,
                        weight: DEFAULT_WEIGHT,
                    });
                }
            }
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{key}[{i}]");
                    let Value::Table(it) = item else {
                        self.problem(ip, "must be a table { key, value, weight }");
                        continue;
                    };
                    self.known_keys(it, &ip, &["key", "value", "weight"]);
                    let k = self.string(it, &ip, "key");
                    let v = self.string(it, &ip, "value");
                    let weight = self
                        .int(it, &ip, "weight", 0, 1_000_000)
                        .map_or(DEFAULT_WEIGHT, |w| w as u32);
                    match (k, v) {
                        (Some(key), Some(value)) => spec
                            .preferences
                            .push(Preference::PreferLabel { key, value, weight }),
                        _ => self.problem(ip, "needs key and value"),
                    }
                }
            }
            Some(other) => self.problem(
                key,
                format!(
                    "must be a table or an array of tables, not {}",
                    type_name(other)
                ),
            ),
        }
    }

    /// `prefer_node = "n1"`, `["n1", "n2"]` (weight 10) or `[{ node = "n1", weight = 20 }]`.
    fn prefer_nodes(&mut self, t: &Table, p: &str, spec: &mut PlacementSpec) {
        let key = path(p, "prefer_node");
        let items = match t.get("prefer_node") {
            None => return,
            Some(Value::String(s)) => vec![Value::String(s.clone())],
            Some(Value::Array(items)) => items.clone(),
            Some(other) => {
                self.problem(
                    key,
                    format!("must be a node id or an array, not {}", type_name(other)),
                );
                return;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{key}[{i}]");
            let (node, weight) = match item {
                Value::String(n) => (Some(n.clone()), DEFAULT_WEIGHT),
                Value::Table(it) => {
                    self.known_keys(it, &ip, &["node", "weight"]);
                    let w = self
                        .int(it, &ip, "weight", 0, 1_000_000)
                        .map_or(DEFAULT_WEIGHT, |w| w as u32);
                    (self.string(it, &ip, "node"), w)
                }
                other => {
                    self.problem(
                        ip,
                        format!("must be a node id or a table, not {}", type_name(other)),
                    );
                    continue;
                }
            };
            match node {
                Some(n) => {
                    if let Some(node) = self.node(&n, &ip) {
                        spec.preferences
                            .push(Preference::PreferNode { node, weight });
                    }
                }
                None => self.problem(ip, "needs a node"),
            }
        }
    }

    /// Reads `[apps.vip]`.
    pub(super) fn vip(&mut self, t: &Table, p: &str) -> Option<VipConfig> {
        self.known_keys(
            t,
            p,
            &[
                "cidr",
                "interface",
                "garp_count",
                "garp_interval",
                "refresh_interval",
                "check_before_claim",
            ],
        );
        let cidr = self.string(t, p, "cidr");
        let interface = self.string(t, p, "interface");
        if cidr.is_none() {
            self.problem(path(p, "cidr"), "a VIP needs cidr = \"a.b.c.d/prefix\"");
        }
        if interface.is_none() {
            self.problem(
                path(p, "interface"),
                "a VIP needs an interface (e.g. \"eth0\")",
            );
        }
        let garp_count = self.int(t, p, "garp_count", 1, 100).map(|n| n as u32);
        let garp_interval = self.duration(t, p, "garp_interval");
        let refresh_interval = match t.get("refresh_interval") {
            Some(Value::String(s)) if s == "off" => Some(None),
            Some(_) => self.duration(t, p, "refresh_interval").map(Some),
            None => None,
        };
        let check_before_claim = match t.get("check_before_claim") {
            None => false,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                self.problem(
                    path(p, "check_before_claim"),
                    format!("must be true or false, not {}", type_name(other)),
                );
                false
            }
        };
        let (cidr, interface) = (cidr?, interface?);
        let vip = VipConfig {
            cidr,
            interface,
            garp_count,
            garp_interval,
            refresh_interval,
            check_before_claim,
        };
        if let Err(e) = crate::daemon::vip::build(&vip) {
            self.problem(p.to_owned(), e.to_string());
        }
        Some(vip)
    }
}
