//! `VipResource` against real network namespaces: claim, release, fencing, check-before-claim,
//! periodic re-announcement, shutdown, and clear errors for misconfiguration.
//! Needs root and iproute2 (`ip`); fails with an install hint otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cluster_core::ActiveResource;
use cluster_core::Epoch;
use cluster_vip::{ClaimCheck, GarpForm, Vip, VipError, VipResource};
use common::{Lan, eventually};

const VIP: &str = "198.51.100.100";
const SECS: Duration = Duration::from_secs(10);

fn vip() -> Vip {
    Vip::new(&format!("{VIP}/32"), "eth0")
        .unwrap()
        .with_garp(3, Duration::from_millis(100))
}

fn resource(lan: &Lan, host: &str, vip: Vip) -> Arc<VipResource> {
    Arc::new(lan.in_ns(host, move || VipResource::new(vip)).unwrap())
}

#[tokio::test]
async fn claim_and_release_are_idempotent_and_leave_nothing_behind() {
    let lan = Lan::new(&["a", "obs"]);
    lan.accept_garp("obs");
    let r = resource(&lan, "a", vip());
    assert!(!lan.holds("a", VIP));

    r.activate(Epoch(5)).await.unwrap();
    assert!(
        lan.holds("a", VIP),
        "the address is on eth0 once activate returns"
    );
    r.activate(Epoch(5)).await.unwrap();
    let status = r.status().await.unwrap();
    assert_eq!(status.claimed, Some(Epoch(5)));
    assert!(status.on_interface);
    let mac_a = lan.mac("a");
    eventually("the observer learns the VIP from the GARP", SECS, || {
        lan.neighbour("obs", VIP).as_deref() == Some(mac_a.as_str())
    })
    .await;

    r.deactivate().await.unwrap();
    assert!(!lan.holds("a", VIP), "released on deactivate");
    r.deactivate().await.unwrap();
    let status = r.status().await.unwrap();
    assert_eq!(status.claimed, None);
    assert!(!status.on_interface);

    // The primary address of the host is untouched.
    assert!(lan.holds("a", "198.51.100.10"));
}

#[tokio::test]
async fn the_reply_form_of_gratuitous_arp_is_learned_too() {
    let lan = Lan::new(&["a", "obs"]);
    lan.accept_garp("obs");
    let r = resource(&lan, "a", vip().with_garp_form(GarpForm::Reply));
    r.activate(Epoch(1)).await.unwrap();
    let mac_a = lan.mac("a");
    eventually(
        "the observer learns the VIP from a gratuitous reply",
        SECS,
        || lan.neighbour("obs", VIP).as_deref() == Some(mac_a.as_str()),
    )
    .await;
    r.deactivate().await.unwrap();
}

#[tokio::test]
async fn a_claim_with_an_older_epoch_is_fenced() {
    let lan = Lan::new(&["a"]);
    let r = resource(&lan, "a", vip());
    r.activate(Epoch(10)).await.unwrap();
    r.deactivate().await.unwrap();
    let e = r.claim(Epoch(7)).await.unwrap_err();
    assert!(
        matches!(
            e,
            VipError::Fenced {
                presented: Epoch(7),
                current: Epoch(10),
                ..
            }
        ),
        "{e}"
    );
    assert!(!lan.holds("a", VIP), "a fenced claim changes nothing");
    // The rule is process-wide: another resource for the same address is fenced too, and the
    // platform sees the core `Fenced` error.
    let other = resource(&lan, "a", vip());
    let e = other.activate(Epoch(9)).await.unwrap_err();
    assert!(
        matches!(
            e,
            cluster_core::Error::Fenced {
                presented: Epoch(9),
                current: Epoch(10)
            }
        ),
        "{e}"
    );
    other.activate(Epoch(11)).await.unwrap();
    assert!(lan.holds("a", VIP));
    other.deactivate().await.unwrap();
}

#[tokio::test]
async fn check_before_claim_refuses_an_address_another_host_answers_for() {
    let lan = Lan::new(&["a", "b"]);
    // Host a holds the VIP outside the cluster's control.
    lan.add_address("a", &format!("{VIP}/32"));
    let checked = vip().with_claim_check(Some(ClaimCheck::default()));
    let r = resource(&lan, "b", checked);
    let e = r.claim(Epoch(3)).await.unwrap_err();
    let mac_a = lan.mac("a");
    match &e {
        VipError::AddressInUse { mac, .. } => assert_eq!(*mac, mac_a),
        other => panic!("expected AddressInUse, got {other}"),
    }
    assert!(e.to_string().contains(&mac_a), "{e}");
    assert!(!lan.holds("b", VIP), "refused: nothing added");
    let core: cluster_core::Error = e.into();
    assert!(
        core.is_transient(),
        "the runtime retries and then steps down"
    );

    // Once a has let go, b claims.
    lan.del_address("a", &format!("{VIP}/32"));
    r.claim(Epoch(4)).await.unwrap();
    assert!(lan.holds("b", VIP));
    r.release().await.unwrap();
}

#[tokio::test]
async fn the_holder_re_announces_periodically() {
    let lan = Lan::new(&["a", "obs"]);
    lan.accept_garp("obs");
    let r = resource(
        &lan,
        "a",
        vip()
            .with_garp(1, Duration::from_millis(100))
            .with_refresh(Some(Duration::from_millis(300))),
    );
    r.activate(Epoch(1)).await.unwrap();
    let mac_a = lan.mac("a");
    eventually("observer learns a", SECS, || {
        lan.neighbour("obs", VIP).as_deref() == Some(mac_a.as_str())
    })
    .await;
    // The observer's cache goes wrong (e.g. it heard a stale holder during a split brain):
    // the next refresh repairs it.
    let obs = lan.ns("obs");
    common::ip(&[
        "-n",
        &obs,
        "neigh",
        "replace",
        VIP,
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "eth0",
        "nud",
        "stale",
    ]);
    assert_eq!(
        lan.neighbour("obs", VIP).as_deref(),
        Some("02:00:00:00:00:99")
    );
    eventually("a refresh GARP moves the observer back to a", SECS, || {
        lan.neighbour("obs", VIP).as_deref() == Some(mac_a.as_str())
    })
    .await;
    // Refresh also restores an address removed behind the holder's back.
    lan.del_address("a", &format!("{VIP}/32"));
    eventually("the refresh re-adds the address", SECS, || {
        lan.holds("a", VIP)
    })
    .await;
    r.deactivate().await.unwrap();
}

#[tokio::test]
async fn shutdown_and_drop_release_the_address_and_leftovers_are_removed_on_start() {
    let lan = Lan::new(&["a"]);
    let r = resource(&lan, "a", vip());
    r.activate(Epoch(1)).await.unwrap();
    r.shutdown().await.unwrap();
    assert!(!lan.holds("a", VIP), "released on shutdown");
    assert!(matches!(r.claim(Epoch(2)).await, Err(VipError::ShutDown)));
    r.deactivate().await.unwrap();

    let r = resource(&lan, "a", vip());
    r.activate(Epoch(2)).await.unwrap();
    drop(r);
    assert!(!lan.holds("a", VIP), "released on drop");

    // A run killed while holding leaves the address: the next start removes it.
    lan.add_address("a", &format!("{VIP}/32"));
    let _r = resource(&lan, "a", vip());
    assert!(!lan.holds("a", VIP), "leftover removed on start");
}

#[tokio::test]
async fn misconfiguration_gives_a_clear_error() {
    let lan = Lan::new(&["a"]);
    let e = lan
        .in_ns("a", || VipResource::new(Vip::new(VIP, "nope0").unwrap()))
        .unwrap_err();
    assert!(
        matches!(e, VipError::NoSuchInterface(ref n) if n == "nope0"),
        "{e}"
    );
    assert!(e.to_string().contains("no such interface \"nope0\""), "{e}");

    let e = Vip::new("198.51.100.100/40", "eth0").unwrap_err();
    assert!(e.to_string().contains("prefix length"), "{e}");

    // An interface that is down cannot announce: the claim fails and adds nothing.
    let r = resource(&lan, "a", vip());
    common::ip(&["-n", &lan.ns("a"), "link", "set", "eth0", "down"]);
    let e = r.activate(Epoch(1)).await.unwrap_err();
    assert!(matches!(e, cluster_core::Error::InvalidArgument(_)), "{e}");
    assert!(
        e.to_string().contains("eth0") && e.to_string().contains("down"),
        "{e}"
    );
    assert!(!lan.holds("a", VIP));
}

/// Drops `CAP_NET_ADMIN` and `CAP_NET_RAW` from the calling thread's effective set.
fn drop_net_caps() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget(2)/capset(2) with a version-3 header and the two data structs that
    // version requires; they affect only the calling thread.
    #[allow(unsafe_code)]
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !((1 << 12) | (1 << 13));
        assert_eq!(
            libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()),
            0,
            "capset: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[tokio::test]
async fn missing_capabilities_give_a_clear_error() {
    let lan = Lan::new(&["a"]);
    let e = lan
        .in_ns("a", || {
            drop_net_caps();
            VipResource::new(vip())
        })
        .unwrap_err();
    assert!(matches!(e, VipError::PermissionDenied(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("CAP_NET_ADMIN") && text.contains("CAP_NET_RAW"),
        "{text}"
    );
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

#[tokio::test]
async fn the_watchdog_runs_while_held_and_release_stops_it_without_side_effects() {
    let lan = Lan::new(&["a"]);
    let r = resource(
        &lan,
        "a",
        vip().with_refresh(Some(Duration::from_millis(100))),
    );
    assert_eq!(r.status().await.unwrap().watchdog_pid, None);
    r.activate(Epoch(1)).await.unwrap();
    let first = r.status().await.unwrap().watchdog_pid.expect("a watchdog");
    assert!(process_alive(first));
    // Idempotent claim: the same watchdog.
    r.activate(Epoch(1)).await.unwrap();
    assert_eq!(r.status().await.unwrap().watchdog_pid, Some(first));

    // Release removes the address and stops the watchdog (reaped, not left as a zombie).
    r.deactivate().await.unwrap();
    assert!(!lan.holds("a", VIP));
    assert!(!process_alive(first), "the watchdog is stopped on release");
    assert_eq!(r.status().await.unwrap().watchdog_pid, None);

    // A watchdog killed from outside is replaced by the next refresh.
    r.activate(Epoch(2)).await.unwrap();
    let second = r.status().await.unwrap().watchdog_pid.unwrap();
    assert_ne!(second, first);
    // SAFETY: kill(2) of the watchdog process (a child of this test process).
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(second as i32, libc::SIGKILL) };
    assert_eq!(rc, 0);
    eventually("the refresh starts a new watchdog", SECS, || {
        watchdog_pid_now(&r).is_some_and(|p| p != second && process_alive(p))
    })
    .await;
    assert!(
        lan.holds("a", VIP),
        "a killed watchdog (SIGKILL) does not act"
    );
    let third = r.status().await.unwrap().watchdog_pid.unwrap();

    // Shutdown releases and stops it too.
    r.shutdown().await.unwrap();
    assert!(!lan.holds("a", VIP));
    assert!(!process_alive(third));
}

/// The watchdog pid, read synchronously from a polling closure.
fn watchdog_pid_now(r: &Arc<VipResource>) -> Option<u32> {
    let r = r.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(r.status())
            .ok()
            .and_then(|s| s.watchdog_pid)
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn without_the_watchdog_no_guard_process_runs() {
    let lan = Lan::new(&["a"]);
    let r = resource(&lan, "a", vip().with_watchdog(false));
    r.activate(Epoch(1)).await.unwrap();
    let status = r.status().await.unwrap();
    assert!(status.on_interface);
    assert_eq!(status.watchdog_pid, None);
    r.deactivate().await.unwrap();
    assert!(!lan.holds("a", VIP));
}
