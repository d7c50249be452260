//! The role table: which subjects each identity of a platform may publish and subscribe to.
//!
//! Pure: derived from the platform's subject and bucket layout (`docs/PROTOCOL.md`,
//! `docs/protocol/*.md`) for a given platform, node list and app list. The same table is written
//! into the nats-server configuration by [`super::server_config`] and documented in
//! `docs/SECURITY.md`. Every platform is its own NATS account, so `$KV`, `$JS.API`, `$O` and
//! `cluster.>` below only ever reach the platform's own streams.

use std::fmt;

use cluster_core::wire::admin::AdminClass;
use cluster_core::wire::names::{Names, SUBJECT_ROOT};
use cluster_core::{AppName, NodeId, PlatformName};

/// An identity of a platform (one NATS user).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `node:{N}`: the daemon of node `N`.
    Node(NodeId),
    /// `admin`: the operator CLI (read and write admin requests, audit reads, no KV).
    Admin,
    /// `viewer`: dashboards and monitoring (read admin requests, audit reads).
    Viewer,
    /// `app:{A}`: an external client or out-of-process backend of app `A`.
    App(AppName),
}

impl Role {
    /// The token used in file names and inbox prefixes: `node-n1`, `admin`, `viewer`, `app-db`.
    pub fn file_stem(&self) -> String {
        match self {
            Role::Node(n) => format!("node-{n}"),
            Role::Admin => "admin".to_owned(),
            Role::Viewer => "viewer".to_owned(),
            Role::App(a) => format!("app-{a}"),
        }
    }

    /// The TLS client-certificate subject of this identity for `verify_and_map`:
    /// `CN={stem}` ([`Role::file_stem`]), e.g. `CN=node-n1`, `CN=admin`.
    pub fn cert_subject(&self) -> String {
        format!("CN={}", self.file_stem())
    }

    /// The private inbox prefix of this identity: `_INBOX.{P}.node.{N}`, `_INBOX.{P}.admin`,
    /// `_INBOX.{P}.viewer`, `_INBOX.{P}.app.{A}` (a `leaf:{L}` would get `_INBOX.{P}.leaf.{L}`).
    /// The client's replies, KV watch deliveries and JetStream API answers all arrive below it,
    /// and only this identity may subscribe there.
    pub fn inbox_prefix(&self, platform: &PlatformName) -> String {
        match self {
            Role::Node(n) => format!("_INBOX.{platform}.node.{n}"),
            Role::Admin => format!("_INBOX.{platform}.admin"),
            Role::Viewer => format!("_INBOX.{platform}.viewer"),
            Role::App(a) => format!("_INBOX.{platform}.app.{a}"),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Node(n) => write!(f, "node:{n}"),
            Role::Admin => f.write_str("admin"),
            Role::Viewer => f.write_str("viewer"),
            Role::App(a) => write!(f, "app:{a}"),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = cluster_core::Error;

    /// `node:{N}`, `admin`, `viewer` or `app:{A}`.
    fn from_str(s: &str) -> cluster_core::Result<Self> {
        match s.split_once(':') {
            None if s == "admin" => Ok(Role::Admin),
            None if s == "viewer" => Ok(Role::Viewer),
            Some(("node", n)) => Ok(Role::Node(n.parse()?)),
            Some(("app", a)) => Ok(Role::App(a.parse()?)),
            _ => Err(cluster_core::Error::InvalidArgument(format!(
                "{s:?} is not an identity: node:<id>, admin, viewer or app:<name>"
            ))),
        }
    }
}

/// Publish and subscribe permissions of one identity, in nats-server terms: deny wins over
/// allow; anything not allowed is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects the identity may publish to.
    pub publish_allow: Vec<String>,
    /// Exceptions to `publish_allow`.
    pub publish_deny: Vec<String>,
    /// Subjects (optionally `"subject queue"`) the identity may subscribe to.
    pub subscribe_allow: Vec<String>,
    /// Exceptions to `subscribe_allow`.
    pub subscribe_deny: Vec<String>,
    /// Whether the identity may answer requests it received (nats-server `allow_responses`,
    /// one reply per request).
    pub allow_responses: bool,
}

/// The platform a role table is made for: its name, nodes and apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    names: Names,
    nodes: Vec<NodeId>,
    apps: Vec<AppName>,
}

impl Layout {
    /// The layout of `platform` with these nodes and apps (duplicates removed, sorted).
    pub fn new(platform: PlatformName, mut nodes: Vec<NodeId>, mut apps: Vec<AppName>) -> Self {
        nodes.sort();
        nodes.dedup();
        apps.sort();
        apps.dedup();
        Self {
            names: Names::new(platform),
            nodes,
            apps,
        }
    }

    /// The platform.
    pub fn platform(&self) -> &PlatformName {
        self.names.platform()
    }

    /// Every identity of the platform: the nodes, `admin`, `viewer`, the apps.
    pub fn roles(&self) -> Vec<Role> {
        let mut roles: Vec<Role> = self.nodes.iter().cloned().map(Role::Node).collect();
        roles.push(Role::Admin);
        roles.push(Role::Viewer);
        roles.extend(self.apps.iter().cloned().map(Role::App));
        roles
    }

    /// The permissions of `role`.
    pub fn permissions(&self, role: &Role) -> Permissions {
        let inbox = format!("{}.>", role.inbox_prefix(self.platform()));
        let mut p = match role {
            Role::Node(n) => self.node(n),
            Role::Admin => self.operator(true),
            Role::Viewer => self.operator(false),
            Role::App(a) => self.app(a),
        };
        // Its own inbox: replies and deliveries; publishing to it is the transport's barrier.
        p.publish_allow.push(inbox.clone());
        p.subscribe_allow.push(inbox);
        p
    }

    fn root(&self) -> String {
        format!("{SUBJECT_ROOT}.{}", self.platform())
    }

    /// Stream name of a KV bucket.
    fn kv_stream(bucket: &str) -> String {
        format!("KV_{bucket}")
    }

    fn node(&self, node: &NodeId) -> Permissions {
        let root = self.root();
        let n = &self.names;
        let members = Self::kv_stream(&n.members_bucket());
        let audit = format!("{}_audit", self.platform());
        let mut publish_allow = vec![
            // Only its own member record.
            format!("$KV.{}.{}", n.members_bucket(), n.member_key(node)),
            format!("$KV.{}.>", n.election_bucket()),
            format!("$KV.{}.>", n.locks_bucket()),
            format!("$KV.{}.>", n.placement_bucket()),
        ];
        publish_allow.extend(
            self.apps
                .iter()
                .map(|a| format!("$KV.{}.>", n.app_bucket(a))),
        );
        publish_allow.extend([
            // JetStream API (bucket and stream management, reads, consumers), flow control and
            // acks, object stores (WAL snapshots); dangerous calls are denied below.
            "$JS.API.>".to_owned(),
            "$JS.FC.>".to_owned(),
            "$JS.ACK.>".to_owned(),
            "$O.>".to_owned(),
            // RPC requests to any app, events, WAL replication records.
            format!("{root}.app.*.rpc.>"),
            format!("{root}.app.*.ev.>"),
            format!("{root}.app.*.repl.>"),
            format!("{root}.ev.>"),
            // Audit records only under its own node token.
            format!("{root}.audit._by.{node}.>"),
        ]);
        let publish_deny = vec![
            "$JS.API.STREAM.DELETE.>".to_owned(),
            // Nobody removes another node's member record or audit records behind the log.
            format!("$JS.API.STREAM.PURGE.{members}"),
            format!("$JS.API.STREAM.MSG.DELETE.{members}"),
            format!("$JS.API.STREAM.UPDATE.{members}"),
            format!("$JS.API.STREAM.PURGE.{audit}"),
            format!("$JS.API.STREAM.MSG.DELETE.{audit}"),
        ];
        let subscribe_allow = vec![
            format!("{root}.app.*.rpc.{node}"),
            format!("{root}.app.*.rpc._any {}", Names::RPC_QUEUE),
            format!("{root}.app.*.rpc._all"),
            format!("{root}.app.*.ev.>"),
            format!("{root}.ev.>"),
            // Admin requests: v1 and both v2 classes, own and broadcast.
            n.admin_node(node),
            n.admin_all(),
            n.admin_class_node(AdminClass::Read, node),
            n.admin_class_node(AdminClass::Write, node),
            n.admin_class_all(AdminClass::Read),
            n.admin_class_all(AdminClass::Write),
        ];
        Permissions {
            publish_allow,
            publish_deny,
            subscribe_allow,
            subscribe_deny: Vec::new(),
            allow_responses: true,
        }
    }

    /// `admin` (`write = true`) or `viewer`.
    fn operator(&self, write: bool) -> Permissions {
        let root = self.root();
        let mut publish_allow = if write {
            vec![format!("{root}.admin.>")]
        } else {
            vec![format!("{root}.admin.read.*"), "$JS.API.INFO".to_owned()]
        };
        if write {
            publish_allow.push("$JS.API.INFO".to_owned());
        }
        // Stream metadata (config and state, no data) for `cluster doctor`.
        publish_allow.push("$JS.API.STREAM.INFO.*".to_owned());
        publish_allow.extend(self.stream_reader(&format!("{}_audit", self.platform())));
        Permissions {
            publish_allow,
            ..Permissions::default()
        }
    }

    fn app(&self, app: &AppName) -> Permissions {
        let root = self.root();
        let bucket = self.names.app_bucket(app);
        let stream = Self::kv_stream(&bucket);
        let mut publish_allow = vec![
            format!("{root}.app.{app}.rpc.>"),
            format!("{root}.app.{app}.ev.>"),
            format!("$KV.{bucket}.>"),
            "$JS.API.INFO".to_owned(),
            format!("$JS.API.STREAM.CREATE.{stream}"),
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}.>"),
            format!("$JS.FC.{stream}.>"),
        ];
        publish_allow.extend(self.stream_reader(&stream));
        Permissions {
            publish_allow,
            subscribe_allow: vec![format!("{root}.app.{app}.ev.>"), format!("{root}.ev.>")],
            ..Permissions::default()
        }
    }

    /// JetStream API calls that read one stream with ephemeral consumers.
    fn stream_reader(&self, stream: &str) -> Vec<String> {
        vec![
            format!("$JS.API.STREAM.INFO.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.INFO.{stream}.*"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.*"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.*"),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(
            "prod".parse().unwrap(),
            vec!["n2".parse().unwrap(), "n1".parse().unwrap()],
            vec!["db".parse().unwrap()],
        )
    }

    #[test]
    fn roles_are_listed_once_in_order() {
        let roles: Vec<String> = layout().roles().iter().map(ToString::to_string).collect();
        assert_eq!(roles, ["node:n1", "node:n2", "admin", "viewer", "app:db"]);
        for r in &roles {
            assert_eq!(r.parse::<Role>().unwrap().to_string(), *r);
        }
        assert!("root".parse::<Role>().is_err() && "node:N_1".parse::<Role>().is_err());
    }

    #[test]
    fn a_node_writes_only_its_own_member_record() {
        let p = layout().permissions(&Role::Node("n1".parse().unwrap()));
        assert!(p.publish_allow.contains(&"$KV.prod_members.n1".to_owned()));
        assert!(
            !p.publish_allow
                .iter()
                .any(|s| s.starts_with("$KV.prod_members.n2"))
        );
        assert!(
            p.publish_allow
                .contains(&"cluster.prod.audit._by.n1.>".to_owned())
        );
        assert!(
            p.subscribe_allow
                .contains(&"cluster.prod.app.*.rpc._any rpc".to_owned())
        );
        assert!(
            p.subscribe_allow
                .contains(&"_INBOX.prod.node.n1.>".to_owned())
        );
        assert!(p.allow_responses);
    }

    #[test]
    fn a_viewer_sends_only_read_requests_and_writes_no_kv() {
        let p = layout().permissions(&Role::Viewer);
        assert!(
            p.publish_allow
                .contains(&"cluster.prod.admin.read.*".to_owned())
        );
        assert!(
            !p.publish_allow
                .iter()
                .any(|s| s.contains("write") || s.starts_with("$KV"))
        );
        assert_eq!(p.subscribe_allow, ["_INBOX.prod.viewer.>"]);
        let admin = layout().permissions(&Role::Admin);
        assert!(!admin.publish_allow.iter().any(|s| s.starts_with("$KV")));
        assert!(!admin.allow_responses);
    }

    #[test]
    fn an_app_reaches_only_its_own_subjects_and_bucket() {
        let p = layout().permissions(&Role::App("db".parse().unwrap()));
        for s in p.publish_allow.iter().chain(&p.subscribe_allow) {
            assert!(
                s.contains("db") || s == "$JS.API.INFO" || s == "cluster.prod.ev.>",
                "{s} is not app db's"
            );
        }
        assert!(!p.subscribe_allow.iter().any(|s| s.contains(".rpc.")));
    }
}
