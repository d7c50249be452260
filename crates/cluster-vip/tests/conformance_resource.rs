//! The active-resource conformance suite against `VipResource` in real network namespaces:
//! each scenario its own LAN; "held" is the address on the host's `eth0` as the kernel reports
//! it (the term is the resource's claim, which the address itself cannot carry). The deadline
//! guard scenario runs too (the watchdog removes the address). Needs root and iproute2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::ActiveResource;
use cluster_testkit::conformance::resource::{self, Observed, ResourceFactory, ResourceUnderTest};
use cluster_vip::{Vip, VipResource};
use common::Lan;

const VIP: &str = "198.51.100.100";

struct OnLan {
    resource: Arc<VipResource>,
    // Dropped after the resource (which releases the address on drop).
    lan: Lan,
}

#[async_trait]
impl ResourceUnderTest for OnLan {
    fn resource(&self) -> Arc<dyn ActiveResource> {
        self.resource.clone()
    }

    async fn observe(&self) -> Observed {
        if !self.lan.holds("a", VIP) {
            return Observed::Released;
        }
        Observed::Held(self.resource.status().await.unwrap().claimed)
    }
}

struct Lans;

#[async_trait]
impl ResourceFactory for Lans {
    async fn fresh(&self) -> Box<dyn ResourceUnderTest> {
        let lan = Lan::new(&["a"]);
        let vip = Vip::new(&format!("{VIP}/32"), "eth0")
            .unwrap()
            .with_garp(1, Duration::from_millis(100));
        let resource = Arc::new(lan.in_ns("a", move || VipResource::new(vip)).unwrap());
        Box::new(OnLan { resource, lan })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_suite_vip() {
    resource::run_all(&Lans).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_deadline_guard_vip() {
    resource::deadline_passing_without_renewal_releases(&Lans, Duration::from_millis(450)).await;
}
