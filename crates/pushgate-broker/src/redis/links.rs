//! The subscriber's connections in sharded pub/sub mode: one to the primary, or on a
//! Redis Cluster one per master that serves a followed key, each with a reader task
//! that hands what Redis sends to the session ([`Event`]), and where each followed key
//! was subscribed ([`Links::route`]), so that it is unsubscribed there and followed
//! again elsewhere when its node fails or its slot moves.

use ahash::{AHashMap, AHashSet};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::conn::{ConnError, Dialer, Stream};
use super::deployment::Mode;
use super::resp::{self, Value};
use super::topology::{self, Topology};

/// Keys per `SSUBSCRIBE` command when re-subscribing many at once.
const CHUNK: usize = 512;

/// What a connection's reader hands the session: its node, its number, and a value
/// or why the connection ended.
pub(super) type Event = (String, u64, Result<Value, ConnError>);

/// One subscriber connection (one per master on a Redis Cluster).
pub(super) struct Link {
    pub(super) id: u64,
    pub(super) write: WriteHalf<Stream>,
    reader: JoinHandle<()>,
    /// When the oldest unanswered PING was sent.
    pub(super) unanswered: Option<Instant>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A session's connections and where each key is followed.
pub(super) struct Links {
    pub(super) cluster: bool,
    pub(super) topology: Topology,
    /// The slot map must be read again (a node failed, Redis unsubscribed a key).
    pub(super) stale: bool,
    pub(super) links: AHashMap<String, Link>,
    pub(super) next_id: u64,
    pub(super) events: mpsc::Sender<Event>,
    /// The node each followed key was subscribed on.
    pub(super) route: AHashMap<String, String>,
    /// Keys wanted but followed nowhere now (their node failed): subscribed again
    /// once the slot map names a node that answers.
    pub(super) pending: AHashSet<String>,
}

impl Links {
    /// Opens the connection to `node` (if not open), its reader feeding `events`.
    pub(super) async fn link(
        &mut self,
        dialer: &Dialer,
        node: &str,
    ) -> Result<&mut Link, ConnError> {
        if !self.links.contains_key(node) {
            let mut conn = dialer.open(node).await?;
            if matches!(dialer.deployment.mode, Mode::Sentinel { .. }) {
                topology::check_primary(&mut conn, dialer).await?;
            }
            let (mut read, write) = conn.split();
            self.next_id += 1;
            let id = self.next_id;
            let (events, addr) = (self.events.clone(), node.to_owned());
            let reader = tokio::spawn(async move {
                loop {
                    let r = read.read().await;
                    let end = r.is_err();
                    if events.send((addr.clone(), id, r)).await.is_err() || end {
                        return;
                    }
                }
            });
            let link = Link {
                id,
                write,
                reader,
                unanswered: None,
            };
            self.links.insert(node.to_owned(), link);
        }
        Ok(self.links.get_mut(node).expect("inserted above"))
    }

    /// `SSUBSCRIBE`s keys on the nodes that serve them. On a single primary a failure
    /// ends the session; on a cluster the keys of a node that cannot be reached wait
    /// in `pending`.
    pub(super) async fn subscribe(
        &mut self,
        dialer: &Dialer,
        keys: Vec<String>,
    ) -> Result<(), ConnError> {
        let cluster = self.cluster;
        for (node, keys) in self.by_node(keys) {
            let Some(node) = node else {
                self.pending.extend(keys);
                continue;
            };
            let sent = match self.link(dialer, &node).await {
                Ok(l) => send_grouped(&mut l.write, "SSUBSCRIBE", &keys, cluster).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => {
                    for k in keys {
                        self.pending.remove(&k);
                        self.route.insert(k, node.clone());
                    }
                }
                Err(e) if !self.cluster => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, %node, "broker subscriber: a redis cluster master cannot be reached");
                    self.lose(&node);
                    self.pending.extend(keys);
                }
            }
        }
        Ok(())
    }

    /// `SUNSUBSCRIBE`s keys where they were subscribed.
    pub(super) async fn unsubscribe(&mut self, keys: &[String]) -> Result<(), ConnError> {
        let mut by_node: Vec<(String, Vec<String>)> = Vec::new();
        for k in keys {
            self.pending.remove(k);
            let Some(node) = self.route.remove(k) else {
                continue;
            };
            match by_node.iter_mut().find(|(n, _)| *n == node) {
                Some((_, v)) => v.push(k.clone()),
                None => by_node.push((node, vec![k.clone()])),
            }
        }
        for (node, keys) in by_node {
            if let Some(l) = self.links.get_mut(&node) {
                if let Err(e) =
                    send_grouped(&mut l.write, "SUNSUBSCRIBE", &keys, self.cluster).await
                {
                    if !self.cluster {
                        return Err(e);
                    }
                    self.lose(&node);
                }
            }
        }
        Ok(())
    }

    /// Keys grouped by the node that serves their slot now.
    fn by_node(&self, keys: Vec<String>) -> Vec<(Option<String>, Vec<String>)> {
        let mut out: Vec<(Option<String>, Vec<String>)> = Vec::new();
        for k in keys {
            let node = self
                .topology
                .node(topology::slot(k.as_bytes()))
                .map(str::to_owned);
            match out.iter_mut().find(|(n, _)| *n == node) {
                Some((_, v)) => v.push(k),
                None => out.push((node, vec![k])),
            }
        }
        out
    }

    /// Drops the connection to `node`: the keys followed there become pending.
    /// Returns them.
    pub(super) fn lose(&mut self, node: &str) -> Vec<String> {
        self.links.remove(node);
        self.stale = true;
        let lost: Vec<String> = self
            .route
            .iter()
            .filter(|(_, n)| n.as_str() == node)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &lost {
            self.route.remove(k);
            self.pending.insert(k.clone());
        }
        lost
    }
}

/// Sends `cmd` with `keys` (in chunks; on a Redis Cluster one command per slot, as
/// sharded pub/sub requires); `PING` is sent without arguments, the other commands
/// not at all without keys.
pub(super) async fn send_grouped(
    w: &mut WriteHalf<Stream>,
    cmd: &str,
    keys: &[String],
    by_slot: bool,
) -> Result<(), ConnError> {
    if keys.is_empty() && cmd != "PING" {
        return Ok(());
    }
    let mut out = Vec::new();
    if keys.is_empty() {
        resp::command(&mut out, [cmd.as_bytes()]);
    } else if by_slot {
        let mut groups: AHashMap<u16, Vec<&str>> = AHashMap::new();
        for k in keys {
            groups
                .entry(topology::slot(k.as_bytes()))
                .or_default()
                .push(k);
        }
        for group in groups.values() {
            for chunk in group.chunks(CHUNK) {
                resp::command(
                    &mut out,
                    std::iter::once(cmd.as_bytes()).chain(chunk.iter().map(|k| k.as_bytes())),
                );
            }
        }
    } else {
        for chunk in keys.chunks(CHUNK) {
            resp::command(
                &mut out,
                std::iter::once(cmd.as_bytes()).chain(chunk.iter().map(|k| k.as_bytes())),
            );
        }
    }
    w.write_all(&out).await?;
    Ok(())
}
