//! `cluster audit`: reads the platform's audit stream (`{P}_audit`) over NATS.
//!
//! JSON (`--json`): `{"v":1,"entries":[{"seq":…, …record…}],"truncated":bool,"next_after":…}`;
//! pass `--after <next_after>` for the next page.

use std::time::SystemTime;

use cluster::AppName;
use cluster::core::audit::{AuditFilter, AuditPage, MAX_QUERY_LIMIT};

use crate::cli::AuditArgs;
use crate::exit::{CliResult, Code, Failure};
use crate::output::{JSON_VERSION, Table, print_json};
use crate::settings::Settings;

/// The filter given by the flags.
pub(crate) fn filter(args: &AuditArgs, now: SystemTime) -> CliResult<AuditFilter> {
    let since = match &args.since {
        Some(s) => {
            let d = crate::config::parse_duration(s)
                .map_err(|e| Failure::new(Code::Invalid, format!("--since: {e}")))?;
            Some(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH))
        }
        None => None,
    };
    let app = args
        .app
        .as_deref()
        .map(AppName::new)
        .transpose()
        .map_err(|e| Failure::new(Code::Invalid, format!("--app: {e}")))?;
    if args.limit == 0 || args.limit > MAX_QUERY_LIMIT {
        return Err(Failure::new(
            Code::Invalid,
            format!("--limit must be between 1 and {MAX_QUERY_LIMIT}"),
        ));
    }
    Ok(AuditFilter {
        category: args.category.clone(),
        app,
        since,
        after: args.after,
        limit: args.limit,
    })
}

/// Runs `cluster audit`.
pub(crate) async fn run(settings: &Settings, args: &AuditArgs) -> CliResult {
    if settings.global.dev {
        return Err(Failure::not_available(
            "audit --dev",
            "a dev-mode audit bridge (the dev daemon keeps its audit log in memory)",
        ));
    }
    let filter = filter(args, SystemTime::now())?;
    let conn = cluster::nats::connect(
        settings.connect_options("cluster-audit", &settings.operator_role()),
    )
    .await
    .map_err(|e| {
        Failure::new(
            Code::Error,
            format!("NATS at {}: {e}", settings.nats.servers.join(",")),
        )
    })?;
    let log = cluster::nats::existing_audit(&conn, settings.platform.as_str()).await;
    let page = match log {
        Ok(log) => cluster::core::audit::AuditSink::query(&log, &filter).await,
        Err(e) => Err(e),
    };
    let _ = conn.close().await;
    let page = page?;
    print(&page, settings.global.json)
}

fn print(page: &AuditPage, json: bool) -> CliResult {
    if json {
        return print_json(&serde_json::json!({
            "v": JSON_VERSION,
            "entries": page.entries,
            "truncated": page.truncated,
            "next_after": page.next_after,
        }));
    }
    // WRITER: the node the sink vouches for (the subject only it may publish to); `-` for
    // records of older nodes. NODE: what the record says.
    let mut table = Table::new(&["SEQ", "TIME", "EVENT", "APP", "NODE", "WRITER", "DATA"]);
    for e in &page.entries {
        let r = &e.record;
        table.row(vec![
            e.seq.to_string(),
            r.ts.clone(),
            r.event(),
            r.app
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or("-".into()),
            r.node.to_string(),
            crate::output::dash(e.writer.as_ref()),
            r.data.to_string(),
        ]);
    }
    print!("{}", table.render());
    if page.truncated {
        println!(
            "(more records: run again with --after {})",
            page.next_after.unwrap_or(0)
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn args(since: Option<&str>, limit: usize) -> AuditArgs {
        AuditArgs {
            category: Some("election".into()),
            app: Some("db".into()),
            since: since.map(Into::into),
            limit,
            after: Some(7),
        }
    }

    #[test]
    fn flags_make_the_filter() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let f = filter(&args(Some("1h"), 50), now).unwrap();
        assert_eq!(
            f.since,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(6_400))
        );
        assert_eq!(f.category.as_deref(), Some("election"));
        assert_eq!(f.app.unwrap().as_str(), "db");
        assert_eq!((f.limit, f.after), (50, Some(7)));
        assert_eq!(
            filter(&args(Some("x"), 5), now).unwrap_err().code,
            Code::Invalid
        );
        assert_eq!(filter(&args(None, 0), now).unwrap_err().code, Code::Invalid);
    }
}
