//! `cluster doctor`: runs cluster-nats' checks as this CLI's identity and prints them.

use cluster::nats::doctor::{self, Status};

use crate::exit::{CliResult, Code, Failure};
use crate::output::{JSON_VERSION, Table, print_json};
use crate::settings::Settings;

/// Prints every check; exit 1 when one failed.
pub(crate) async fn run(settings: &Settings, monitor: Option<&str>) -> CliResult {
    let servers = settings.nats.servers.join(",");
    let conn = cluster::nats::connect(
        settings.connect_options("cluster-doctor", &settings.operator_role()),
    )
    .await
    .map_err(|e| {
        Failure::new(
            Code::Error,
            format!("cannot connect to NATS at {servers}: {e}; check --nats and the credentials"),
        )
    })?;
    let checks = doctor::run(&conn, &settings.platform, monitor).await;
    let _ = conn.close().await;
    if settings.global.json {
        print_json(&serde_json::json!({"v": JSON_VERSION, "checks": checks}))?;
    } else {
        let mut table = Table::new(&["CHECK", "STATUS", "DETAIL"]);
        for c in &checks {
            let status = serde_json::to_value(c.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            table.row(vec![c.name.to_owned(), status, c.detail.clone()]);
        }
        print!("{}", table.render());
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed > 0 {
        return Err(Failure::new(
            Code::Error,
            format!("{failed} check(s) failed (see above)"),
        ));
    }
    Ok(())
}
