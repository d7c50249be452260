//! Reads a TOML configuration, collecting every problem instead of stopping at the first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster::core::election::ElectionTiming;
use cluster::{AppName, Labels, Mode, NodeId, PlatformName, PlatformOptions};
use toml::{Table, Value};

use super::{
    AppConfig, BackendConfig, Config, NatsConfig, Problem, Problems, SqliteConfig, TlsConfig,
};
use crate::daemon::backends;

/// Loads and validates the file at `path`.
pub(crate) fn load(path: &Path) -> Result<Config, Problems> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: file.clone(),
            key: String::new(),
            why: if e.kind() == std::io::ErrorKind::NotFound {
                "no such file: create it (examples/cluster.toml of the release archive is a \
                 start; keys in docs/CONFIG.md) or pass --config"
                    .to_owned()
            } else {
                format!("cannot read the file: {e}")
            },
        }])
    })?;
    parse_str(&file, &text)
}

/// Parses and validates configuration text; `file` names it in problems.
pub(crate) fn parse_str(file: &str, text: &str) -> Result<Config, Problems> {
    let table: Table = text.parse().map_err(|e: toml::de::Error| {
        Problems(vec![Problem {
            file: file.to_owned(),
            key: String::new(),
            why: format!("not valid TOML: {}", e.to_string().trim()),
        }])
    })?;
    let mut r = Reader {
        file: file.to_owned(),
        problems: Vec::new(),
    };
    let config = r.config(&table);
    if r.problems.is_empty() {
        Ok(config)
    } else {
        Err(Problems(r.problems))
    }
}

const TOP_KEYS: &[&str] = &[
    "platform",
    "node",
    "address",
    "state_dir",
    "labels",
    "nats",
    "health_addr",
    "metrics_addr",
    "audit",
    "telemetry",
    "election",
    "membership",
    "rpc_timeout",
    "shutdown_timeout",
    "apps",
];

pub(super) struct Reader {
    pub(super) file: String,
    pub(super) problems: Vec<Problem>,
}

pub(super) fn path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl Reader {
    pub(super) fn problem(&mut self, key: impl Into<String>, why: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            key: key.into(),
            why: why.into(),
        });
    }

    pub(super) fn known_keys(&mut self, t: &Table, prefix: &str, allowed: &[&str]) {
        for key in t.keys() {
            if !allowed.contains(&key.as_str()) {
                self.problem(
                    path(prefix, key),
                    format!("unknown key; allowed here: {}", allowed.join(", ")),
                );
            }
        }
    }

    pub(super) fn string(&mut self, t: &Table, prefix: &str, key: &str) -> Option<String> {
        match t.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(
                    path(prefix, key),
                    format!("must be a string, not {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(super) fn table<'t>(&mut self, t: &'t Table, prefix: &str, key: &str) -> Option<&'t Table> {
        match t.get(key)? {
            Value::Table(t) => Some(t),
            other => {
                self.problem(
                    path(prefix, key),
                    format!("must be a table, not {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(super) fn duration(&mut self, t: &Table, prefix: &str, key: &str) -> Option<Duration> {
        let s = self.string(t, prefix, key)?;
        match super::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(why) => {
                self.problem(path(prefix, key), why);
                None
            }
        }
    }

    fn float(&mut self, t: &Table, prefix: &str, key: &str) -> Option<f64> {
        match t.get(key)? {
            Value::Float(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            other => {
                self.problem(
                    path(prefix, key),
                    format!("must be a number, not {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(super) fn int(
        &mut self,
        t: &Table,
        prefix: &str,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        match t.get(key)? {
            Value::Integer(i) if (min..=max).contains(i) => Some(*i),
            Value::Integer(i) => {
                self.problem(
                    path(prefix, key),
                    format!("{i} is out of range {min}..={max}"),
                );
                None
            }
            other => {
                self.problem(
                    path(prefix, key),
                    format!("must be an integer, not {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(super) fn strings(&mut self, t: &Table, prefix: &str, key: &str) -> Vec<String> {
        let Some(v) = t.get(key) else {
            return Vec::new();
        };
        let Value::Array(items) = v else {
            self.problem(
                path(prefix, key),
                format!("must be an array of strings, not {}", type_name(v)),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => self.problem(
                    format!("{}[{i}]", path(prefix, key)),
                    format!("must be a string, not {}", type_name(other)),
                ),
            }
        }
        out
    }

    pub(super) fn string_map(
        &mut self,
        t: &Table,
        prefix: &str,
        key: &str,
    ) -> Vec<(String, String)> {
        let Some(map) = self.table(t, prefix, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in map {
            match v {
                Value::String(s) => out.push((k.clone(), s.clone())),
                other => self.problem(
                    path(&path(prefix, key), k),
                    format!("must be a string, not {}", type_name(other)),
                ),
            }
        }
        out
    }

    fn path_buf(&mut self, t: &Table, prefix: &str, key: &str) -> Option<PathBuf> {
        self.string(t, prefix, key).map(PathBuf::from)
    }

    fn config(&mut self, t: &Table) -> Config {
        self.known_keys(t, "", TOP_KEYS);
        let mut c = Config {
            file: self.file.clone(),
            ..Config::default()
        };
        if let Some(p) = self.string(t, "", "platform") {
            match PlatformName::new(&p) {
                Ok(p) => c.platform = Some(p),
                Err(e) => self.problem("platform", e.to_string()),
            }
        }
        if let Some(n) = self.string(t, "", "node") {
            match NodeId::new(&n) {
                Ok(n) => c.node = Some(n),
                Err(e) => self.problem("node", e.to_string()),
            }
        }
        c.address = self.string(t, "", "address");
        c.state_dir = self
            .string(t, "", "state_dir")
            .map(std::path::PathBuf::from);
        c.labels = self.labels(t);
        c.nats = self.nats(t);
        c.health_addr = self.socket_addr(t, "health_addr");
        c.metrics_addr = self.socket_addr(t, "metrics_addr");
        c.observe = self.observe(t);
        c.options = self.options(t);
        c.apps = self.apps(t);
        c
    }

    fn observe(&mut self, t: &Table) -> super::ObserveConfig {
        let mut o = super::ObserveConfig::default();
        if let Some(a) = self.table(t, "", "audit") {
            self.known_keys(a, "audit", &["max_age"]);
            o.audit_max_age = self.duration(a, "audit", "max_age");
            if o.audit_max_age
                .is_some_and(|d| d < std::time::Duration::from_secs(60))
            {
                self.problem("audit.max_age", "must be at least 1m".to_owned());
            }
        }
        if let Some(tel) = self.table(t, "", "telemetry") {
            self.known_keys(tel, "telemetry", &["otlp_endpoint"]);
            o.otlp_endpoint = self.string(tel, "telemetry", "otlp_endpoint");
            if let Some(e) = &o.otlp_endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                self.problem(
                    "telemetry.otlp_endpoint",
                    format!("{e:?} must be an http:// or https:// URL (OTLP over HTTP)"),
                );
            }
        }
        o
    }

    fn socket_addr(&mut self, t: &Table, key: &str) -> Option<std::net::SocketAddr> {
        let s = self.string(t, "", key)?;
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    key,
                    format!("{s:?} is not an address; write e.g. \"127.0.0.1:8080\""),
                );
                None
            }
        }
    }

    fn labels(&mut self, t: &Table) -> Labels {
        let mut labels = Labels::new();
        for (k, v) in self.string_map(t, "", "labels") {
            if let Err(e) = labels.insert(k.clone(), v) {
                self.problem(format!("labels.{k}"), e.to_string());
            }
        }
        labels
    }

    fn nats(&mut self, t: &Table) -> NatsConfig {
        let mut n = NatsConfig::default();
        let Some(nt) = self.table(t, "", "nats") else {
            return n;
        };
        let p = "nats";
        self.known_keys(
            nt,
            p,
            &[
                "servers", "creds", "nkey", "role", "user", "password", "token", "tls", "replicas",
            ],
        );
        n.servers = self.strings(nt, p, "servers");
        for (i, s) in n.servers.iter().enumerate() {
            if let Err(why) = super::check_nats_url(s) {
                self.problems.push(Problem {
                    file: self.file.clone(),
                    key: format!("nats.servers[{i}]"),
                    why,
                });
            }
        }
        n.creds = self.path_buf(nt, p, "creds");
        n.nkey = self.path_buf(nt, p, "nkey");
        n.role = match self.string(nt, p, "role").as_deref() {
            None => None,
            Some("admin") => Some(crate::cli::OperatorRole::Admin),
            Some("viewer") => Some(crate::cli::OperatorRole::Viewer),
            Some(other) => {
                self.problem("nats.role", format!("{other:?} is not admin or viewer"));
                None
            }
        };
        n.user = self.string(nt, p, "user");
        n.password = self.string(nt, p, "password");
        n.token = self.string(nt, p, "token");
        n.replicas = self.int(nt, p, "replicas", 1, 5).map(|r| r as usize);
        let methods = [
            n.creds.is_some(),
            n.nkey.is_some(),
            n.user.is_some(),
            n.token.is_some(),
        ]
        .iter()
        .filter(|m| **m)
        .count();
        if methods > 1 {
            self.problem(
                "nats",
                "give at most one of creds, nkey, user/password and token",
            );
        }
        if n.user.is_some() != n.password.is_some() {
            self.problem("nats.user", "user and password must be given together");
        }
        if let Some(tt) = self.table(nt, p, "tls") {
            let p = "nats.tls";
            self.known_keys(tt, p, &["ca", "cert", "key"]);
            let tls = TlsConfig {
                ca: self.path_buf(tt, p, "ca"),
                cert: self.path_buf(tt, p, "cert"),
                key: self.path_buf(tt, p, "key"),
            };
            if tls.cert.is_some() != tls.key.is_some() {
                self.problem(
                    "nats.tls.cert",
                    "cert and key must be given together (mutual TLS)",
                );
            }
            n.tls = Some(tls);
        }
        n
    }

    fn options(&mut self, t: &Table) -> PlatformOptions {
        let mut o = PlatformOptions::default();
        if let Some(et) = self.table(t, "", "election") {
            let p = "election";
            self.known_keys(
                et,
                p,
                &[
                    "profile",
                    "lease_ttl",
                    "renew_interval",
                    "safety_margin",
                    "cooldown",
                ],
            );
            match self.string(et, p, "profile").as_deref() {
                None | Some("default") => {}
                Some("fast") => o = PlatformOptions::fast(),
                Some(other) => self.problem(
                    "election.profile",
                    format!("unknown profile {other:?}; use \"default\" or \"fast\""),
                ),
            }
            let mut e: ElectionTiming = o.election;
            if let Some(d) = self.duration(et, p, "lease_ttl") {
                e.lease_ttl = d;
            }
            if let Some(d) = self.duration(et, p, "renew_interval") {
                e.renew_interval = d;
            }
            if let Some(f) = self.float(et, p, "safety_margin") {
                e.safety_margin = f;
            }
            if let Some(d) = self.duration(et, p, "cooldown") {
                e.cooldown = d;
            }
            if e.lease_ttl < Duration::from_secs(1) {
                self.problem(
                    "election.lease_ttl",
                    format!("{:?} must be at least 1s", e.lease_ttl),
                );
            }
            if e.renew_interval.is_zero() || e.renew_interval * 3 > e.lease_ttl {
                self.problem(
                    "election.renew_interval",
                    format!(
                        "{:?} must be > 0 and at most a third of lease_ttl ({:?})",
                        e.renew_interval, e.lease_ttl
                    ),
                );
            }
            if !(e.safety_margin > 0.0 && e.safety_margin < 0.5) {
                self.problem(
                    "election.safety_margin",
                    format!("{} must be between 0 and 0.5 (exclusive)", e.safety_margin),
                );
            }
            o.election = e;
        }
        if let Some(mt) = self.table(t, "", "membership") {
            let p = "membership";
            self.known_keys(mt, p, &["ttl", "refresh"]);
            if let Some(d) = self.duration(mt, p, "ttl") {
                o.member_ttl = d;
            }
            if let Some(d) = self.duration(mt, p, "refresh") {
                o.member_refresh = d;
            }
            if o.member_ttl < Duration::from_secs(1) {
                self.problem(
                    "membership.ttl",
                    format!("{:?} must be at least 1s", o.member_ttl),
                );
            }
            if o.member_refresh.is_zero() || o.member_refresh * 3 > o.member_ttl {
                self.problem(
                    "membership.refresh",
                    format!(
                        "{:?} must be > 0 and at most a third of membership.ttl ({:?})",
                        o.member_refresh, o.member_ttl
                    ),
                );
            }
        }
        if let Some(d) = self.duration(t, "", "rpc_timeout") {
            if d.is_zero() {
                self.problem("rpc_timeout", "must be > 0");
            }
            o.rpc_timeout = d;
        }
        if let Some(d) = self.duration(t, "", "shutdown_timeout") {
            if d.is_zero() {
                self.problem("shutdown_timeout", "must be > 0");
            }
            o.shutdown_timeout = d;
        }
        o
    }

    fn apps(&mut self, t: &Table) -> Vec<AppConfig> {
        let Some(v) = t.get("apps") else {
            return Vec::new();
        };
        let Value::Array(items) = v else {
            self.problem(
                "apps",
                format!(
                    "must be an array of tables ([[apps]]), not {}",
                    type_name(v)
                ),
            );
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        let mut apps = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("apps[{i}]");
            let Value::Table(at) = item else {
                self.problem(p, "must be a table ([[apps]])");
                continue;
            };
            self.known_keys(
                at,
                &p,
                &[
                    "name",
                    "mode",
                    "replicas",
                    "partitions",
                    "backend",
                    "placement",
                    "vip",
                    "sqlite",
                ],
            );
            let name = match self.string(at, &p, "name") {
                None => {
                    self.problem(path(&p, "name"), "every app needs a name");
                    None
                }
                Some(n) => match AppName::new(&n) {
                    Ok(n) if !seen.insert(n.clone()) => {
                        self.problem(path(&p, "name"), format!("app {n} is declared twice"));
                        None
                    }
                    Ok(n) => Some(n),
                    Err(e) => {
                        self.problem(path(&p, "name"), e.to_string());
                        None
                    }
                },
            };
            let mode = self.mode(at, &p);
            let backend = self
                .table(at, &p, "backend")
                .and_then(|bt| self.backend(bt, &path(&p, "backend")));
            let placement = self
                .table(at, &p, "placement")
                .map(|pt| self.placement(pt, &path(&p, "placement"), mode));
            let vip = self
                .table(at, &p, "vip")
                .and_then(|vt| self.vip(vt, &path(&p, "vip")));
            if vip.is_some() && mode.is_some_and(|m| !m.is_singleton()) {
                self.problem(
                    path(&p, "vip"),
                    "a VIP is held by one leader: only singleton apps can have one",
                );
            }
            let sqlite = self
                .table(at, &p, "sqlite")
                .and_then(|st| self.sqlite(st, &path(&p, "sqlite"), mode, backend.is_some()));
            if let (Some(name), Some(mode)) = (name, mode) {
                apps.push(AppConfig {
                    name,
                    mode,
                    backend,
                    placement,
                    vip,
                    sqlite,
                });
            }
        }
        apps
    }

    fn sqlite(
        &mut self,
        st: &Table,
        p: &str,
        mode: Option<Mode>,
        has_backend: bool,
    ) -> Option<SqliteConfig> {
        self.known_keys(
            st,
            p,
            &[
                "path",
                "snapshot_interval",
                "retention_count",
                "retention_age",
                "durability",
            ],
        );
        if mode.is_some_and(|m| !m.is_singleton()) {
            self.problem(
                p.to_owned(),
                "SQLite replication has one writer (the leader): only singleton apps can have it",
            );
        }
        let path_value = self.path_buf(st, p, "path");
        if path_value.as_ref().is_none_or(|v| v.as_os_str().is_empty()) {
            self.problem(
                path(p, "path"),
                "give the database file (the local replica), e.g. path = \"/var/lib/app/app.db\"",
            );
        }
        let commit_wait = match self.string(st, p, "durability").as_deref() {
            None | Some("async") => false,
            Some("commit-wait") if has_backend => {
                self.problem(
                    path(p, "durability"),
                    "commit-wait needs an in-process writer; the backend process writes this \
                     database itself, so only durability = \"async\" applies",
                );
                false
            }
            Some("commit-wait") => true,
            Some(other) => {
                self.problem(
                    path(p, "durability"),
                    format!("unknown durability {other:?}; use \"async\" or \"commit-wait\""),
                );
                false
            }
        };
        Some(SqliteConfig {
            path: path_value.unwrap_or_default(),
            snapshot_interval: self.duration(st, p, "snapshot_interval"),
            retention_count: self.int(st, p, "retention_count", 1, 1000).unwrap_or(3) as usize,
            retention_age: self.duration(st, p, "retention_age"),
            commit_wait,
        })
    }

    fn mode(&mut self, at: &Table, p: &str) -> Option<Mode> {
        let key = path(p, "mode");
        let Some(mode) = self.string(at, p, "mode") else {
            self.problem(
                key,
                "every app needs a mode: singleton, spread, replicas or ring",
            );
            return None;
        };
        let mode = match mode.as_str() {
            "singleton" => Mode::Singleton,
            "spread" | "pool" => Mode::Spread,
            "replicas" => Mode::Replicas {
                n: self.int(at, p, "replicas", 1, 1000).unwrap_or(0) as u32,
            },
            "ring" => Mode::Ring {
                partitions: self.int(at, p, "partitions", 1, 65536).unwrap_or(256) as u32,
            },
            other => {
                self.problem(
                    key,
                    format!("unknown mode {other:?}; use singleton, spread, replicas or ring"),
                );
                return None;
            }
        };
        if let Mode::Replicas { n: 0 } = mode {
            self.problem(
                path(p, "replicas"),
                "mode replicas needs replicas = N (N >= 1)",
            );
        }
        Some(mode)
    }

    fn backend(&mut self, bt: &Table, p: &str) -> Option<BackendConfig> {
        let kind = self.string(bt, p, "type");
        let backend = match kind.as_deref() {
            None => {
                self.problem(
                    path(p, "type"),
                    "every backend needs a type: process, systemd or docker",
                );
                return None;
            }
            Some("process") => {
                self.known_keys(
                    bt,
                    p,
                    &["type", "command", "args", "env", "dir", "graceful_timeout"],
                );
                let command = self.string(bt, p, "command");
                if command.as_deref().is_none_or(str::is_empty) {
                    self.problem(path(p, "command"), "a process backend needs a command");
                }
                BackendConfig::Process {
                    command: command.unwrap_or_default(),
                    args: self.strings(bt, p, "args"),
                    env: self.string_map(bt, p, "env"),
                    dir: self.path_buf(bt, p, "dir"),
                    graceful_timeout: self
                        .duration(bt, p, "graceful_timeout")
                        .unwrap_or(Duration::from_secs(10)),
                }
            }
            Some("systemd") => {
                self.known_keys(
                    bt,
                    p,
                    &["type", "unit", "start_timeout", "stop_timeout", "bus"],
                );
                let unit = self.string(bt, p, "unit");
                if unit.is_none() {
                    self.problem(
                        path(p, "unit"),
                        "a systemd backend needs a unit (e.g. \"redis.service\")",
                    );
                }
                BackendConfig::Systemd {
                    unit: unit.unwrap_or_default(),
                    start_timeout: self.duration(bt, p, "start_timeout"),
                    stop_timeout: self.duration(bt, p, "stop_timeout"),
                    bus: self.string(bt, p, "bus"),
                }
            }
            Some("docker") => {
                self.known_keys(
                    bt,
                    p,
                    &[
                        "type",
                        "image",
                        "name",
                        "env",
                        "ports",
                        "volumes",
                        "network",
                        "stop_timeout",
                        "host",
                        "extra_args",
                    ],
                );
                let image = self.string(bt, p, "image");
                if image.is_none() {
                    self.problem(path(p, "image"), "a docker backend needs an image");
                }
                let extra_args = self.strings(bt, p, "extra_args");
                if let Err(e) = cluster_backend::docker::ExtraArgs::parse(&extra_args) {
                    self.problem(path(p, "extra_args"), e.to_string());
                }
                BackendConfig::Docker {
                    image: image.unwrap_or_default(),
                    name: self.string(bt, p, "name"),
                    env: self.string_map(bt, p, "env"),
                    ports: self.strings(bt, p, "ports"),
                    volumes: self.strings(bt, p, "volumes"),
                    network: self.string(bt, p, "network"),
                    stop_timeout: self.duration(bt, p, "stop_timeout"),
                    host: self.string(bt, p, "host"),
                    extra_args,
                }
            }
            Some(other) => {
                self.problem(
                    path(p, "type"),
                    format!("unknown backend type {other:?}; use process, systemd or docker"),
                );
                return None;
            }
        };
        if !backends::available().contains(&backend.kind()) {
            self.problem(
                path(p, "type"),
                backends::unavailable_reason(backend.kind()),
            );
        }
        Some(backend)
    }
}
