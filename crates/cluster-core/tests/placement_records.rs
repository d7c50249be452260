//! Compatibility of the placement, member and rebalance records: records written by older
//! nodes (without the new optional fields) decode with the defaults, and the new fields round
//! trip; the load helpers compare fractions as documented.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_core::NodeLoad;
use cluster_core::wire::member::MemberRecord;
use cluster_core::wire::placement::{AssignmentRecord, DrainRecord, MoveRecord, decode, encode};
use cluster_core::wire::rebalance::{ResourceLimits, ResourceThresholds};

#[test]
fn records_of_older_nodes_decode_with_the_new_fields_defaulted() {
    let drain: DrainRecord =
        decode("drain", br#"{"v":1,"id":"x","force":false,"by":"n1"}"#).unwrap();
    assert_eq!(drain.max_concurrent, 0);
    assert!(drain.released.is_empty());
    let mv: MoveRecord = decode(
        "move",
        br#"{"v":1,"id":"x","from":"n1","to":"n2","by":"n1"}"#,
    )
    .unwrap();
    assert_eq!(mv.lock, 0);
    let a: AssignmentRecord = decode(
        "assignment",
        br#"{"v":1,"epoch":3,"assignment":{"format":1,"version":2,"apps":{}},"pending":{}}"#,
    )
    .unwrap();
    assert!(a.blocked.is_empty());
    let member = MemberRecord::decode(
        br#"{"v":1,"node":"n1","platform":"prod","instance":"i","address":"","labels":{},
            "apps":[],"healthy":true,"joined_at_ms":0,"last_seen_ms":0}"#,
    )
    .unwrap();
    assert_eq!(member.load, None);
}

#[test]
fn new_fields_round_trip_and_are_omitted_when_unset() {
    let drain: DrainRecord = decode(
        "drain",
        br#"{"v":1,"id":"x","force":true,"by":"n1","max_concurrent":2,"released":["a1"]}"#,
    )
    .unwrap();
    let text = String::from_utf8(encode(&drain).unwrap().to_vec()).unwrap();
    assert!(text.contains(r#""max_concurrent":2"#) && text.contains(r#""released":["a1"]"#));
    let plain = DrainRecord {
        max_concurrent: 0,
        released: Vec::new(),
        ..drain
    };
    let text = String::from_utf8(encode(&plain).unwrap().to_vec()).unwrap();
    assert!(
        !text.contains("max_concurrent") && !text.contains("released"),
        "{text}"
    );

    let member = MemberRecord::decode(
        br#"{"v":1,"node":"n1","platform":"prod","instance":"i","address":"","labels":{},
            "apps":[],"healthy":true,"joined_at_ms":0,"last_seen_ms":0,
            "load":{"cpu":450,"memory":700}}"#,
    )
    .unwrap();
    let load = member.load.unwrap();
    assert_eq!((load.cpu, load.memory, load.disk), (450, 700, 0));
    let m = member.clone().into_member();
    assert_eq!(MemberRecord::from_member(&m), member);
}

#[test]
fn load_fractions_thresholds_and_limits() {
    let l = NodeLoad::from_fractions(0.451, 1.2, f64::NAN);
    assert_eq!((l.cpu, l.memory, l.disk), (451, 1200, 0));
    let hot = NodeLoad::from_fractions(0.9, 0.5, 0.0);
    let cool = NodeLoad::from_fractions(0.2, 0.45, 0.0);
    let t = ResourceThresholds {
        cpu_imbalance: 0.3,
        memory_imbalance: 0.25,
        disk_imbalance: 0.0,
    };
    let (dim, spread, limit) = t.exceeded(&[hot, cool]).unwrap();
    assert_eq!(dim, "cpu");
    assert!((spread - 0.7).abs() < 1e-9 && limit == 0.3);
    assert!(
        t.exceeded(&[hot]).is_none(),
        "one measured node never exceeds"
    );
    assert!(
        ResourceThresholds::default()
            .exceeded(&[hot, cool])
            .is_none()
    );
    let limits = ResourceLimits {
        cpu: 0.8,
        memory: 0.0,
        disk: 0.0,
    };
    assert_eq!(limits.exceeded_by(&hot).map(|x| x.0), Some("cpu"));
    assert!(limits.exceeded_by(&cool).is_none());
    assert!(ResourceLimits::default().exceeded_by(&hot).is_none());
}
