//! The optional virtual IP of a declared Singleton app (`cluster-vip`): claimed with the term's
//! fencing token when the node becomes leader, before the backend starts; released after it
//! stopped.

use std::sync::Arc;

use cluster::App;
use cluster::core::RetryPolicy;
use cluster_vip::{ClaimCheck, Vip, VipError, VipResource};

use crate::config::VipConfig;

/// The VIP configuration (validated; nothing is changed on the system).
pub(crate) fn build(config: &VipConfig) -> Result<Vip, VipError> {
    let mut vip = Vip::new(&config.cidr, &config.interface)?;
    if let Some(n) = config.garp_count {
        vip.garp_count = n;
    }
    if let Some(i) = config.garp_interval {
        vip.garp_interval = i;
    }
    if let Some(r) = config.refresh_interval {
        vip.refresh_interval = r;
    }
    if config.check_before_claim {
        vip.check_before_claim = Some(ClaimCheck::default());
    }
    vip.validate()?;
    Ok(vip)
}

/// Adds the VIP to `app`'s resources (checks capabilities and the interface, removes a leftover
/// address of an earlier run).
pub(crate) fn attach(app: &App, config: &VipConfig) -> Result<(), VipError> {
    let resource = VipResource::new(build(config)?)?;
    app.add_resource(Arc::new(resource), RetryPolicy::default());
    Ok(())
}
