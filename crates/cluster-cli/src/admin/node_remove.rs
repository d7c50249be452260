//! `cluster node remove <id>`: deletes the member record of a node that is gone. Any live
//! node judges and does it (the admin method `node.remove`); a live target is refused with
//! the reason.

use cluster::core::wire::admin::{AdminMethod, NodeRemoved};
use cluster::core::wire::placement_admin::NodeParams;

use super::placement::{any_node, request, to_node};
use super::{Channel, parse_node};
use crate::exit::CliResult;
use crate::output::{JSON_VERSION, Table, print_json};
use crate::settings::Settings;

/// `cluster node remove <id>`.
pub(crate) async fn remove(settings: &Settings, channel: &Channel, id: &str) -> CliResult {
    let node = parse_node(id)?;
    let judge = any_node(settings, channel).await?;
    let params = NodeParams {
        node,
        reason: "cluster node remove".to_owned(),
    };
    let removed: NodeRemoved = to_node(
        settings,
        channel,
        &judge,
        &request(AdminMethod::NodeRemove, &params)?,
        // The judge watches a record it saw only once for two heartbeats.
        Some(settings.config.options.member_refresh * 2 + settings.timeout),
    )
    .await?
    .into_result()?;
    if settings.global.json {
        return print_json(&serde_json::json!({
            "v": JSON_VERSION,
            "node": removed.node,
            "removed": true,
            "revision": removed.revision,
            "instance": removed.instance,
            "why": removed.why,
            "by": judge,
        }));
    }
    let mut t = Table::new(&["NODE", "REVISION", "INSTANCE", "WHY"]);
    t.row(vec![
        removed.node.to_string(),
        removed.revision.to_string(),
        if removed.instance.is_empty() {
            "-".to_owned()
        } else {
            removed.instance.clone()
        },
        removed.why.clone(),
    ]);
    print!("{}", t.render());
    println!(
        "node {} removed: its member record is deleted (judged by {judge})",
        removed.node
    );
    Ok(())
}
