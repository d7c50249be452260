//! The subscription table and message routing of the in-memory network.

use std::collections::{BTreeMap, HashMap};

use cluster_core::Message;
use cluster_core::transport::subject_matches;

use crate::delivery::{Sender, Stamped};
use crate::faults::Faults;

struct SubEntry {
    node: String,
    pattern: String,
    queue: Option<String>,
    tx: Sender<Message>,
}

/// Every live subscription of the network.
#[derive(Default)]
pub(crate) struct Bus {
    subs: BTreeMap<u64, SubEntry>,
    next_id: u64,
    /// Round-robin cursor per queue group name.
    cursors: HashMap<String, u64>,
}

impl Bus {
    /// A fresh subscription id.
    pub(crate) fn reserve_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Registers subscription `id` (from [`Bus::reserve_id`]).
    pub(crate) fn insert(
        &mut self,
        id: u64,
        node: &str,
        pattern: &str,
        queue: Option<&str>,
        tx: Sender<Message>,
    ) {
        self.subs.insert(
            id,
            SubEntry {
                node: node.to_owned(),
                pattern: pattern.to_owned(),
                queue: queue.map(str::to_owned),
                tx,
            },
        );
    }

    /// Number of live subscriptions.
    pub(crate) fn len(&self) -> usize {
        self.subs.len()
    }

    /// Removes a subscription; nothing is routed to it afterwards.
    pub(crate) fn remove(&mut self, id: u64) {
        self.subs.remove(&id);
    }

    /// Routes `msg` published by `from` and returns the number of reachable subscriptions
    /// interested in it (0 means "no responders").
    ///
    /// Subscriptions of partitioned nodes count as disconnected: they have no interest and are
    /// never picked as a queue group member. A cut link drops the message on the way to the
    /// picked subscription (the server still sees the interest). Each plain subscription gets the message; each queue
    /// group (by name, as NATS groups them) gets it on exactly one member, chosen round-robin
    /// among the reachable members in subscription order. The publisher's and the receiver's
    /// delays add up; their drop rates are rolled (publisher first, once per message).
    pub(crate) fn route(&mut self, faults: &Faults, from: &str, msg: Message) -> usize {
        let mut plain = Vec::new();
        let mut groups: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (id, sub) in &self.subs {
            if !subject_matches(&sub.pattern, &msg.subject) || faults.is_partitioned(&sub.node) {
                continue;
            }
            match &sub.queue {
                None => plain.push(*id),
                Some(q) => groups.entry(q.as_str()).or_default().push(*id),
            }
        }
        let interest = plain.len() + groups.values().map(Vec::len).sum::<usize>();
        if interest == 0 || faults.roll_drop(from) {
            return interest;
        }
        let mut targets = plain;
        for (name, members) in groups {
            let cursor = self.cursors.entry(name.to_owned()).or_default();
            // Both casts are lossless: a member count fits in u64 and the index is below it.
            targets.push(members[(*cursor % members.len() as u64) as usize]);
            *cursor += 1;
        }
        let pub_delay = faults.delay(from);
        let mut closed = Vec::new();
        for id in targets {
            let Some(sub) = self.subs.get(&id) else {
                continue;
            };
            if faults.is_link_cut(from, &sub.node) {
                faults.count_dropped(&sub.node);
                continue;
            }
            if faults.roll_drop(&sub.node) {
                continue;
            }
            let delay = pub_delay + faults.delay(&sub.node);
            if sub.tx.send(Stamped::after(delay, msg.clone())).is_err() {
                closed.push(id);
            }
        }
        for id in closed {
            self.subs.remove(&id);
        }
        interest
    }
}
