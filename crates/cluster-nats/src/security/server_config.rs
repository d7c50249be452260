//! Renders the role table as a nats-server `accounts {}` block with nkey users.

use std::fmt::Write as _;

use super::roles::{Layout, Permissions, Role};

/// How the server recognises a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAuth {
    /// An nkey public key (`U…`); the client proves it holds the seed.
    Nkey(String),
    /// The subject of the client's TLS certificate (`CN=node-n1`), with the server's
    /// `tls { verify_and_map: true }`.
    CertSubject(String),
}

/// One identity of the generated configuration: its role and how the server recognises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The role.
    pub role: Role,
    /// The credential.
    pub auth: UserAuth,
}

/// The account entry of one platform (`{P}: { jetstream: enabled, users: [...] }`), to be
/// placed inside an `accounts {}` block (see [`accounts_block`]).
pub fn account_entry(layout: &Layout, users: &[User]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  {}: {{", layout.platform());
    out.push_str("    jetstream: enabled\n    users: [\n");
    for user in users {
        let p = layout.permissions(&user.role);
        let _ = writeln!(out, "      # {}", user.role);
        let id = match &user.auth {
            UserAuth::Nkey(key) => format!("nkey: {key:?}"),
            UserAuth::CertSubject(subject) => format!("user: {subject:?}"),
        };
        let _ = writeln!(out, "      {{ {id}, permissions: {{");
        write_list(&mut out, "publish", &p.publish_allow, &p.publish_deny);
        write_list(&mut out, "subscribe", &p.subscribe_allow, &p.subscribe_deny);
        write_responses(&mut out, &p);
        out.push_str("      } }\n");
    }
    out.push_str("    ]\n  }\n");
    out
}

/// A complete `accounts {}` block holding the given account entries (one per platform).
pub fn accounts_block<'a>(entries: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("accounts {\n");
    for entry in entries {
        out.push_str(entry);
    }
    out.push_str("}\n");
    out
}

fn write_list(out: &mut String, kind: &str, allow: &[String], deny: &[String]) {
    let _ = writeln!(out, "        {kind}: {{");
    let _ = writeln!(out, "          allow: {}", quoted(allow));
    if !deny.is_empty() {
        let _ = writeln!(out, "          deny: {}", quoted(deny));
    }
    out.push_str("        }\n");
}

fn write_responses(out: &mut String, p: &Permissions) {
    if p.allow_responses {
        out.push_str("        allow_responses: true\n");
    }
}

/// A list of double-quoted strings (subjects never contain `"` or `\`).
fn quoted(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", inner.join(", "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_user_per_role_with_its_lists() {
        let layout = Layout::new(
            "prod".parse().unwrap(),
            vec!["n1".parse().unwrap()],
            Vec::new(),
        );
        let users: Vec<User> = layout
            .roles()
            .into_iter()
            .enumerate()
            .map(|(i, role)| User {
                auth: if i == 2 {
                    UserAuth::CertSubject("CN=viewer".to_owned())
                } else {
                    UserAuth::Nkey(format!("UKEY{i}"))
                },
                role,
            })
            .collect();
        let text = accounts_block([account_entry(&layout, &users).as_str()]);
        assert!(text.starts_with("accounts {\n  prod: {\n    jetstream: enabled\n"));
        assert_eq!(text.matches("{ nkey: ").count(), 2);
        assert!(text.contains("# viewer\n      { user: \"CN=viewer\", permissions: {"));
        assert!(text.contains("# node:n1\n      { nkey: \"UKEY0\""));
        assert!(text.contains("\"$KV.prod_members.n1\""));
        assert_eq!(text.matches("allow_responses: true").count(), 1);
        assert!(text.contains("deny: [\"$JS.API.STREAM.DELETE.>\""));
    }
}
