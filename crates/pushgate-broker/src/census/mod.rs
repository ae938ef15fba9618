//! Cluster-wide channel counts (a "census"): the subscribers of some channels on
//! every live node, summed. The Pusher API's channel list and subscription counts
//! are built on it (docs/pusher.md, "Node-level and cluster-wide").
//!
//! In process, the census is this node's counts. With Redis it is a scatter/gather
//! over the bus (`redis/census.rs`, docs/cluster.md "Census"): the asking node
//! publishes the query on the broadcast key, whose `SPUBLISH` reply says how many
//! nodes heard it; each of them (the asker included) counts its own subscribers and
//! answers on the asker's node key; the asker sums the answers once every node that
//! heard the query answered, or refuses ([`CensusError::Incomplete`]) at the
//! deadline: a missing node is never silently left out of a sum.
//!
//! - [`wire`]: the two bus messages (query, answer) in the bus's compact format.
//! - Here: the query and its answer types, this node's counts ([`local`]) and the
//!   sum of the nodes' answers ([`Tally`]).

pub mod wire;

use std::collections::BTreeMap;
use std::time::Duration;

use pushgate_hub::Hub;
use pushgate_protocol::MAX_CHANNEL_LEN;
use thiserror::Error;

use crate::error::BrokerError;

/// Most channels one node puts in its answer to a prefix query. Beyond, it answers
/// that it has more and the census is refused ([`CensusError::TooMany`]) rather than
/// summed from a cut list: one answer stays under about 1.4 MB on the bus (names are
/// at most 128 bytes).
pub const MAX_ANSWER: usize = 10_000;
/// Most channels one query names (the Pusher API's limit on one event's channels).
pub const MAX_NAMES: usize = 100;

/// What a census counts. Names are pushgate channel names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CensusQuery {
    /// Every channel whose name starts with this prefix (empty: every channel).
    Prefix(String),
    /// These channels (at most [`MAX_NAMES`]).
    Channels(Vec<String>),
}

/// Subscribers of channels, summed over the nodes that answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// The channels with at least one subscriber on some node, by name, each with
    /// its subscribers summed over the nodes (a channel asked for by name and
    /// followed nowhere is absent).
    pub channels: Vec<(String, u64)>,
    /// Nodes whose counts are in the sum (this one included).
    pub nodes: u32,
}

impl Census {
    /// The subscribers of `channel` (0 if it has none).
    pub fn get(&self, channel: &str) -> u64 {
        self.channels
            .binary_search_by(|(n, _)| n.as_str().cmp(channel))
            .map_or(0, |i| self.channels[i].1)
    }
}

/// Why a census could not be answered. Never a partial sum.
#[derive(Debug, Clone, Error)]
pub enum CensusError {
    /// The bus cannot be reached, or the node is stopping.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// Some nodes that heard the query did not answer within the broker's timeout
    /// (a stalled node, a lost answer, a node of an older version that cannot read
    /// the query).
    #[error("{missing} of {expected} nodes did not answer the channel count within {waited:?}; counting without them would undercount")]
    Incomplete {
        expected: u32,
        missing: u32,
        waited: Duration,
    },
    /// This node did not hear its own query (its subscription to the broadcast key
    /// is being made again): its own subscribers would be left out.
    #[error("this node does not follow the cluster bus now (reconnecting); retry")]
    NotHeard,
    /// A node has more than [`MAX_ANSWER`] channels under the prefix.
    #[error("node {node} has more than {limit} channels with this prefix: narrow the prefix")]
    TooMany { node: String, limit: usize },
    /// More names than [`MAX_NAMES`] in one query.
    #[error("{0} channels in one count; at most {MAX_NAMES}")]
    TooManyNames(usize),
}

/// One node's counts for a query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Channels with at least one subscriber on the node, by name.
    pub channels: Vec<(String, u64)>,
    /// The node has more matching channels than it answered (prefix queries).
    pub truncated: bool,
}

/// This node's counts for `q`. With a `cap`, a node with more matching channels
/// answers none, flagged `truncated` (the census is then refused, so the list is not
/// sent). Names longer than a channel name can be match nothing.
pub(crate) fn local(hub: &Hub, q: &CensusQuery, cap: Option<usize>) -> Counts {
    let mut channels: Vec<(String, u64)> = match q {
        CensusQuery::Prefix(p) if p.len() > MAX_CHANNEL_LEN => Vec::new(),
        // With a cap, the node stops scanning past it: a longer list is refused anyway.
        CensusQuery::Prefix(p) => hub
            .channel_counts(p, cap.unwrap_or(usize::MAX))
            .into_iter()
            .map(|(n, c)| (n.into(), c as u64))
            .collect(),
        CensusQuery::Channels(names) => names
            .iter()
            .filter(|n| n.len() <= MAX_CHANNEL_LEN)
            .map(|n| (n.clone(), hub.channel_subscribers(n) as u64))
            .filter(|(_, c)| *c > 0)
            .collect(),
    };
    channels.sort_unstable();
    channels.dedup_by(|a, b| a.0 == b.0);
    let truncated = cap.is_some_and(|cap| channels.len() > cap);
    if truncated {
        // Not summed by the asker (it refuses the census): sent empty, not cut.
        channels.clear();
    }
    Counts {
        channels,
        truncated,
    }
}

/// The answers of a census so far: each node's counts once, summed.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    sums: BTreeMap<String, u64>,
    nodes: Vec<String>,
    /// Answers received, repeats included: a node subscribed twice to the broadcast
    /// key (while a slot moves) is counted twice by `SPUBLISH` and answers twice.
    pub(crate) messages: u32,
    too_many: Option<String>,
}

impl Tally {
    /// Adds `node`'s answer (a repeated answer of a node is not summed again).
    pub(crate) fn add(&mut self, node: &str, counts: Counts) {
        self.messages += 1;
        if self.nodes.iter().any(|n| n == node) {
            return;
        }
        self.nodes.push(node.to_owned());
        if counts.truncated && self.too_many.is_none() {
            self.too_many = Some(node.to_owned());
        }
        for (name, n) in counts.channels {
            *self.sums.entry(name).or_default() += n;
        }
    }

    pub(crate) fn has(&self, node: &str) -> bool {
        self.nodes.iter().any(|n| n == node)
    }

    /// The census, unless a node had too many channels to answer whole.
    pub(crate) fn finish(self) -> Result<Census, CensusError> {
        if let Some(node) = self.too_many {
            return Err(CensusError::TooMany {
                node,
                limit: MAX_ANSWER,
            });
        }
        Ok(Census {
            nodes: self.nodes.len() as u32,
            channels: self.sums.into_iter().filter(|(_, n)| *n > 0).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_hub::HubConfig;

    fn counts(c: &[(&str, u64)], truncated: bool) -> Counts {
        Counts {
            channels: c.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            truncated,
        }
    }

    #[test]
    fn answers_are_summed_per_channel_and_a_repeated_node_once() {
        let mut t = Tally::default();
        t.add("n1", counts(&[("a", 2), ("b", 1)], false));
        t.add("n2", counts(&[("b", 3), ("c", 1)], false));
        t.add("n2", counts(&[("b", 3), ("c", 1)], false));
        assert_eq!(t.messages, 3);
        assert!(t.has("n1") && t.has("n2") && !t.has("n3"));
        let c = t.finish().unwrap();
        assert_eq!(c.nodes, 2);
        assert_eq!(
            c.channels,
            counts(&[("a", 2), ("b", 4), ("c", 1)], false).channels
        );
        assert_eq!((c.get("b"), c.get("zz")), (4, 0));
    }

    #[test]
    fn a_truncated_answer_refuses_the_census() {
        let mut t = Tally::default();
        t.add("n1", counts(&[("a", 1)], false));
        t.add("n2", counts(&[("a", 1)], true));
        assert!(matches!(
            t.finish(),
            Err(CensusError::TooMany { node, limit: MAX_ANSWER }) if node == "n2"
        ));
    }

    #[tokio::test]
    async fn local_counts_match_prefix_or_names_and_respect_the_cap() {
        let hub = pushgate_hub::Hub::new(HubConfig {
            shards: 2,
            node_id: "n1".into(),
            ..HubConfig::default()
        });
        for s in hub.shards() {
            tokio::spawn(s.clone().run());
        }
        let mut conns = Vec::new();
        for chans in [&["p/a", "p/b", "q"][..], &["p/a"][..]] {
            let (id, shard) = hub.next_conn();
            let conn = shard.register(id, None);
            let chans: Vec<String> = chans.iter().map(|c| c.to_string()).collect();
            conn.subscribe(&chans).unwrap();
            conns.push(conn);
        }
        let q = CensusQuery::Prefix("p/".into());
        assert_eq!(
            local(&hub, &q, None),
            counts(&[("p/a", 2), ("p/b", 1)], false)
        );
        assert_eq!(local(&hub, &q, Some(1)), counts(&[], true));
        assert_eq!(
            local(&hub, &q, Some(2)),
            counts(&[("p/a", 2), ("p/b", 1)], false)
        );
        let names = CensusQuery::Channels(vec!["q".into(), "none".into(), "q".into()]);
        assert_eq!(local(&hub, &names, None), counts(&[("q", 1)], false));
        let long = CensusQuery::Prefix("x".repeat(MAX_CHANNEL_LEN + 1));
        assert_eq!(local(&hub, &long, None), Counts::default());
    }
}
