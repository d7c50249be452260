//! Candidacy of a Singleton app's node: withdrawn while a resource reports that this node must
//! not lead (`ActiveResource::leadership_blocked`, e.g. a database replica whose promotion failed
//! for a reason that would repeat), restored once none does. Without it such a node would win
//! the lease again after every cooldown and fail the same way, forever.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::app::App;
use super::resource;
use cluster_core::election::Election;

/// How often the resources are asked.
const PERIOD: Duration = Duration::from_millis(500);

/// Watches the resources of `app` and sets the candidacy of `election` on every change.
pub(crate) fn spawn(app: &App, election: Arc<dyn Election>) -> tokio::task::JoinHandle<()> {
    let app = app.clone();
    tokio::spawn(async move {
        let mut blocked: Option<String> = None;
        loop {
            tokio::time::sleep(PERIOD).await;
            let now = resource::leadership_blocked(&app.resources());
            if now.is_some() == blocked.is_some() {
                blocked = now;
                continue;
            }
            let candidate = now.is_none();
            match &now {
                Some(why) => warn!(app = %app.name(), reason = %why,
                    "this node stops standing for leadership until the cause changes"),
                None => info!(app = %app.name(), "this node stands for leadership again"),
            }
            match election.set_candidate(candidate).await {
                Ok(()) => blocked = now,
                // Retried at the next period (the state is left unchanged).
                Err(e) => warn!(app = %app.name(), error = %e, candidate, "set_candidate failed"),
            }
        }
    })
}
