//! Resolves every setting explicitly: flag > environment variable > configuration file >
//! default. (Flags and environment variables are merged by clap; the file and the defaults
//! here.)

use std::path::PathBuf;
use std::time::Duration;

use cluster::nats::ConnectOptions;
use cluster::nats::security::{self, Role};
use cluster::{NodeId, PlatformName};

use crate::cli::{Global, OperatorRole};
use crate::config::{self, Config, NatsConfig, Problem, Problems};
use crate::exit::{CliResult, Code, Failure};

/// The default NATS URL.
pub(crate) const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";
/// The default platform name.
pub(crate) const DEFAULT_PLATFORM: &str = "default";

/// Resolved settings of one invocation.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) global: Global,
    pub(crate) config: Config,
    pub(crate) platform: PlatformName,
    pub(crate) nats: NatsConfig,
    pub(crate) timeout: Duration,
}

impl Settings {
    /// Loads the configuration file (if any) and resolves the platform, NATS and timeout.
    pub(crate) fn resolve(global: &Global) -> CliResult<Self> {
        let config = match &global.config {
            Some(path) => config::load(path).map_err(invalid)?,
            None => Config::default(),
        };
        let mut problems = Vec::new();
        let flag = |key: &str, why: String| Problem {
            file: "<flags/env>".to_owned(),
            key: key.to_owned(),
            why,
        };
        let platform = match &global.platform {
            Some(p) => PlatformName::new(p).map_err(|e| flag("--platform", e.to_string())),
            None => match &config.platform {
                Some(p) => Ok(p.clone()),
                None => {
                    PlatformName::new(DEFAULT_PLATFORM).map_err(|e| flag("platform", e.to_string()))
                }
            },
        };
        let platform = platform.map_err(|p| problems.push(p)).ok();
        let mut nats = config.nats.clone();
        if let Some(urls) = &global.nats {
            nats.servers = urls
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            for url in &nats.servers {
                if let Err(why) = config::check_nats_url(url) {
                    problems.push(flag("--nats", why));
                }
            }
        }
        if nats.servers.is_empty() {
            nats.servers = vec![DEFAULT_NATS.to_owned()];
        }
        credentials(global, &mut nats, &mut problems);
        let timeout = match &global.timeout {
            Some(t) => match config::parse_duration(t) {
                Ok(d) if d.is_zero() => {
                    problems.push(flag("--timeout", format!("{t:?} must be above zero")));
                    None
                }
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(flag("--timeout", e));
                    None
                }
            },
            None => Some(Duration::from_secs(5)),
        };
        match (platform, timeout, problems.is_empty()) {
            (Some(platform), Some(timeout), true) => Ok(Self {
                global: global.clone(),
                config,
                platform,
                nats,
                timeout,
            }),
            _ => Err(invalid(Problems(problems))),
        }
    }

    /// The node id: flag/env, then the file, then the hostname.
    pub(crate) fn node(&self) -> CliResult<NodeId> {
        if let Some(n) = &self.global.node {
            return NodeId::new(n)
                .map_err(|e| Failure::new(Code::Invalid, format!("--node {n:?}: {e}")));
        }
        if let Some(n) = &self.config.node {
            return Ok(n.clone());
        }
        let host = hostname().ok_or_else(|| {
            Failure::new(
                Code::Invalid,
                "cannot read the hostname to use as node id; pass --node <id> (or set CLUSTER_NODE, or `node` in the config file)",
            )
        })?;
        NodeId::new(&host).map_err(|e| {
            Failure::new(
                Code::Invalid,
                format!(
                    "the hostname {host:?} is not a valid node id ({e}); pass --node <id> \
                     (or set CLUSTER_NODE, or `node` in the config file)"
                ),
            )
        })
    }

    /// The identity admin commands connect as: `admin` unless `--nats-role viewer`.
    pub(crate) fn operator_role(&self) -> Role {
        match self.nats.role {
            Some(OperatorRole::Viewer) => Role::Viewer,
            Some(OperatorRole::Admin) | None => Role::Admin,
        }
    }

    /// Connection options for NATS as `role` (its credentials and private inbox prefix).
    pub(crate) fn connect_options(&self, name: &str, role: &Role) -> ConnectOptions {
        let n = &self.nats;
        let mut o = ConnectOptions::new(n.servers.iter().cloned())
            .name(name)
            .inbox_prefix(role.inbox_prefix(&self.platform));
        if let Some(c) = &n.creds {
            o = o.creds_file(c.clone());
        }
        if let Some(k) = &n.nkey {
            o = o.nkey_file(k.clone());
        }
        if let (Some(u), Some(p)) = (&n.user, &n.password) {
            o = o.user_password(u.clone(), p.clone());
        }
        if let Some(t) = &n.token {
            o = o.token(t.clone());
        }
        if let Some(tls) = &n.tls {
            o = o.tls(cluster::nats::TlsOptions {
                ca_file: tls.ca.clone(),
                client_cert: tls.cert.clone(),
                client_key: tls.key.clone(),
            });
        }
        o.request_timeout(self.timeout)
    }

    /// The local socket of the dev daemon.
    pub(crate) fn dev_socket(&self) -> PathBuf {
        if let Some(p) = &self.global.dev_socket {
            return p.clone();
        }
        let dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        dir.join(format!("cluster-dev-{}.sock", self.platform))
    }
}

/// Applies `--nats-creds`/`--nats-nkey`/`--nats-role` over the file's settings (a flag's
/// credentials replace the file's) and checks that the credentials and TLS files can be read,
/// so a bad path stops every command before anything starts.
fn credentials(global: &Global, nats: &mut NatsConfig, problems: &mut Vec<Problem>) {
    let flag = |key: &str, why: String| Problem {
        file: "<flags/env>".to_owned(),
        key: key.to_owned(),
        why,
    };
    if global.nats_creds.is_some() && global.nats_nkey.is_some() {
        problems.push(flag(
            "--nats-creds",
            "give --nats-creds or --nats-nkey, not both".to_owned(),
        ));
    }
    if global.nats_creds.is_some() || global.nats_nkey.is_some() {
        nats.creds = global.nats_creds.clone();
        nats.nkey = global.nats_nkey.clone();
        nats.user = None;
        nats.password = None;
        nats.token = None;
    }
    if global.nats_role.is_some() {
        nats.role = global.nats_role;
    }
    if let Some(path) = &nats.creds {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let now = std::time::SystemTime::now();
                if let Err(e) = security::jwt::check_not_expired(path, &text, now) {
                    problems.push(flag("nats creds", e.to_string()));
                }
            }
            Err(e) => problems.push(flag(
                "nats creds",
                format!(
                    "cannot read the NATS creds file {}: {e}; check the path and that this user \
                     may read it",
                    path.display()
                ),
            )),
        }
    }
    if let Some(path) = &nats.nkey
        && let Err(e) = security::read_seed(path)
    {
        problems.push(flag("nats nkey", e.to_string()));
    }
    let tls_files = nats.tls.iter().flat_map(|t| {
        [("ca", &t.ca), ("cert", &t.cert), ("key", &t.key)]
            .into_iter()
            .filter_map(|(key, path)| path.as_ref().map(|p| (key, p)))
    });
    for (key, path) in tls_files {
        if let Err(e) = std::fs::read(path) {
            problems.push(flag(
                &format!("nats.tls.{key}"),
                format!(
                    "cannot read the TLS file {}: {e}; check the path and that this user may \
                     read it",
                    path.display()
                ),
            ));
        }
    }
}

fn invalid(problems: Problems) -> Failure {
    Failure::new(Code::Invalid, problems.to_string())
}

/// The machine's hostname (short form, lowercased), if it can be read.
pub(crate) fn hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let short = raw.trim().split('.').next()?.to_owned();
    (!short.is_empty()).then_some(short)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("cluster-cli-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "platform = \"from-file\"\nnode = \"file-node\"\n[nats]\nservers = [\"nats://10.9.9.9:4222\"]\n",
        )
        .unwrap();
        let global = Global {
            config: Some(file.clone()),
            ..Global::default()
        };
        let s = Settings::resolve(&global).unwrap();
        assert_eq!(s.platform.as_str(), "from-file");
        assert_eq!(s.node().unwrap().as_str(), "file-node");
        assert_eq!(s.nats.servers, ["nats://10.9.9.9:4222"]);
        let global = Global {
            config: Some(file),
            platform: Some("from-flag".into()),
            node: Some("flag-node".into()),
            nats: Some("nats://127.0.0.1:1,nats://127.0.0.1:2".into()),
            ..Global::default()
        };
        let s = Settings::resolve(&global).unwrap();
        assert_eq!(s.platform.as_str(), "from-flag");
        assert_eq!(s.node().unwrap().as_str(), "flag-node");
        assert_eq!(s.nats.servers.len(), 2);
        let s = Settings::resolve(&Global::default()).unwrap();
        assert_eq!(s.platform.as_str(), DEFAULT_PLATFORM);
        assert_eq!(s.nats.servers, [DEFAULT_NATS]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_invalid_node_flag_says_what_to_do() {
        let global = Global {
            node: Some("Bad.Host".into()),
            ..Global::default()
        };
        let err = Settings::resolve(&global).unwrap().node().unwrap_err();
        assert_eq!(err.code, Code::Invalid);
        assert!(err.message.contains("--node"), "{}", err.message);
    }
}
