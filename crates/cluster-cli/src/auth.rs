//! `cluster auth gen-config`: the platform's NATS account, users and seed files
//! (docs/SECURITY.md).

use std::path::Path;

use cluster::nats::security::{self, Credentials, Layout, Role, generate};
use cluster::{AppName, NodeId};

use crate::exit::{CliResult, Code, Failure};
use crate::output::print_json;
use crate::settings::Settings;

/// Writes `accounts.conf` and (unless `tls`: users mapped from certificate subjects) the seed
/// files into `out`; prints what it wrote.
pub(crate) fn gen_config(
    settings: &Settings,
    nodes: &str,
    apps: &str,
    out: &Path,
    tls: bool,
) -> CliResult {
    let nodes: Vec<NodeId> = list(nodes, "--nodes")?;
    if nodes.is_empty() {
        return Err(Failure::new(
            Code::Invalid,
            "--nodes: give at least one node id",
        ));
    }
    let apps: Vec<AppName> = list(apps, "--apps")?;
    let layout = Layout::new(settings.platform.clone(), nodes, apps);
    let credentials = if tls {
        Credentials::CertSubjects
    } else {
        Credentials::Nkeys
    };
    let generated = generate(&layout, out, credentials)
        .map_err(|e| Failure::new(Code::Invalid, e.to_string()))?;
    if tls {
        return print_cert_subjects(settings, &layout, &generated.accounts_file);
    }
    if settings.global.json {
        let seeds: Vec<serde_json::Value> = generated
            .seeds
            .iter()
            .map(|(role, path, created)| {
                serde_json::json!({"identity": role.to_string(), "file": path,
                    "inbox_prefix": role.inbox_prefix(layout.platform()), "created": created})
            })
            .collect();
        return print_json(&serde_json::json!({
            "v": 1, "platform": layout.platform().as_str(),
            "accounts_file": generated.accounts_file, "identities": seeds,
        }));
    }
    println!(
        "wrote {} (account {}); include it from the nats-server configuration",
        generated.accounts_file.display(),
        layout.platform()
    );
    for (role, path, created) in &generated.seeds {
        let what = if *created { "new" } else { "kept" };
        println!("  {role:<20} {} ({what})", path.display());
    }
    println!(
        "daemons: cluster run --nats-nkey {}/node-<id>.nk; operators: --nats-nkey admin.nk \
         (dashboards: --nats-nkey viewer.nk --nats-role viewer)",
        out.display()
    );
    Ok(())
}

/// `gen-config --managed`: the platform's operator, accounts and the server's operator config.
pub(crate) fn gen_managed(settings: &Settings, out: &Path) -> CliResult {
    let managed = security::generate_managed(&settings.platform, out)
        .map_err(|e| Failure::new(Code::Invalid, e.to_string()))?;
    if settings.global.json {
        return print_json(&serde_json::json!({
            "v": 1, "platform": settings.platform.as_str(),
            "server_config": managed.server_config, "account_key": managed.account_key,
        }));
    }
    println!(
        "wrote {} (operator mode; include it from the nats-server configuration) and the \
         account key {} (keep it private; it signs every identity): mint identities with \
         `cluster auth mint --account-key {} --identity app:<name> --out <file>`",
        managed.server_config.display(),
        managed.account_key.display(),
        managed.account_key.display()
    );
    Ok(())
}

/// `auth mint`: one identity's `.creds` file.
pub(crate) fn mint(
    settings: &Settings,
    identity: &str,
    account_key: &Path,
    ttl: &str,
    apps: &str,
    out: &Path,
) -> CliResult {
    let invalid = |e: String| Failure::new(Code::Invalid, e);
    let role: Role = identity
        .parse()
        .map_err(|e: cluster::Error| invalid(format!("--identity: {e}")))?;
    let ttl = crate::config::parse_duration(ttl).map_err(|e| invalid(format!("--ttl: {e}")))?;
    let nodes = match &role {
        Role::Node(n) => vec![n.clone()],
        _ => Vec::new(),
    };
    let mut apps: Vec<AppName> = list(apps, "--apps")?;
    if let Role::App(a) = &role {
        apps.push(a.clone());
    }
    let layout = Layout::new(settings.platform.clone(), nodes, apps);
    let expiry = security::mint(&layout, &role, account_key, ttl, out)
        .map_err(|e| invalid(e.to_string()))?;
    let expires_ms = expiry
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    if settings.global.json {
        return print_json(&serde_json::json!({
            "v": 1, "identity": role.to_string(), "file": out, "expires_ms": expires_ms,
            "inbox_prefix": role.inbox_prefix(layout.platform()),
        }));
    }
    println!(
        "wrote {} for {role} (inbox prefix {}), valid for {ttl:?}",
        out.display(),
        role.inbox_prefix(layout.platform())
    );
    Ok(())
}

fn print_cert_subjects(settings: &Settings, layout: &Layout, accounts: &Path) -> CliResult {
    let roles = layout.roles();
    if settings.global.json {
        let ids: Vec<serde_json::Value> = roles
            .iter()
            .map(|r| {
                serde_json::json!({"identity": r.to_string(), "cert_subject": r.cert_subject(),
                    "inbox_prefix": r.inbox_prefix(layout.platform())})
            })
            .collect();
        return print_json(&serde_json::json!({
            "v": 1, "platform": layout.platform().as_str(),
            "accounts_file": accounts, "identities": ids,
        }));
    }
    println!(
        "wrote {} (account {}); include it from the nats-server configuration with \
         tls {{ verify: true, verify_and_map: true }}; issue each identity a client certificate \
         with this subject:",
        accounts.display(),
        layout.platform()
    );
    for role in &roles {
        println!("  {role:<20} {}", role.cert_subject());
    }
    Ok(())
}

fn list<T: std::str::FromStr>(text: &str, flag: &str) -> CliResult<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e| Failure::new(Code::Invalid, format!("{flag} {s:?}: {e}")))
        })
        .collect()
}
