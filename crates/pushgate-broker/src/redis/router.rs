//! The publisher's connections: one per primary, each command sent to the node that
//! serves its key's slot, the replies put back in command order.
//!
//! A batch is split by node; the parts are written and read at once, each within the
//! timeout. On a Redis Cluster a `MOVED` reply updates the slot map (and asks for a
//! full refresh before the next batch) and the command is sent again where it points;
//! an `ASK` reply sends it once more, after `ASKING`, to the node it names. A command
//! refused with `MOVED`/`ASK` was not run, so sending it again never runs it twice.
//!
//! Each command ends as one [`Reply`]: Redis's answer, not sent (its node could not be
//! reached: it ran nowhere), or lost (written, but the answer did not come back: it
//! may have run).
//!
//! Two tasks have a pool of their own: the publisher and presence, each with its Lua
//! scripts ([`Scripts`]), loaded on every connection it opens.

use std::sync::Arc;

use ahash::AHashMap;
use futures_util::future::join_all;
use tokio::io::AsyncWriteExt;

use super::conn::{Conn, ConnError, Dialer};
use super::deployment::Mode;
use super::resp::{self, Value};
use super::script;
use super::topology::{self, Redirect, Topology};
use crate::error::{Unavailable, Uncertain};

/// Most redirections followed for one command in one batch.
const MAX_REDIRECTS: usize = 3;

/// What became of one command.
#[derive(Debug)]
pub(crate) enum Reply {
    Got(Value),
    NotSent(Unavailable),
    Lost(Uncertain),
}

/// A command with the slot of its key.
pub(crate) struct Routed {
    pub(crate) slot: u16,
    pub(crate) bytes: Vec<u8>,
}

/// The Lua scripts a pool's connections load, and the digests (SHA1 of the text, as
/// Redis computes them) that `EVALSHA` calls them by: the same on every node, known
/// before any connects.
pub(crate) struct Scripts {
    texts: &'static [&'static str],
    digests: Vec<String>,
}

impl Scripts {
    pub(crate) fn new(texts: &'static [&'static str]) -> Scripts {
        let digests = texts
            .iter()
            .map(|t| sha1_smol::Sha1::from(t).digest().to_string())
            .collect();
        Scripts { texts, digests }
    }

    /// `SCRIPT LOAD` of every script, one command each.
    fn load(&self) -> Vec<Vec<u8>> {
        self.texts
            .iter()
            .map(|t| {
                let mut out = Vec::new();
                resp::command(&mut out, [&b"SCRIPT"[..], b"LOAD", t.as_bytes()]);
                out
            })
            .collect()
    }

    /// Whether the replies to [`Scripts::load`] are the expected digests.
    fn loaded(&self, replies: &[Value]) -> bool {
        replies.len() == self.digests.len()
            && replies
                .iter()
                .zip(&self.digests)
                .all(|(v, d)| v.as_bytes().is_some_and(|b| &b[..] == d.as_bytes()))
    }
}

/// A task's view of the deployment: its connections, one per primary.
pub(crate) struct Pool {
    pub(crate) dialer: Dialer,
    pub(crate) topology: Option<Topology>,
    /// A `MOVED` was seen or a node failed: refresh the slot map before the next batch.
    pub(crate) stale: bool,
    conns: AHashMap<String, Conn>,
    scripts: Scripts,
}

impl Pool {
    pub(crate) fn new(dialer: Dialer, scripts: Scripts) -> Pool {
        Pool {
            dialer,
            topology: None,
            stale: true,
            conns: AHashMap::new(),
            scripts,
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        self.dialer.deployment.mode == Mode::Cluster
    }

    /// Finds the primaries (again) and, for a single primary, connects to it: the
    /// broker is up only with a primary that answers. Cluster masters are connected
    /// when a command is first sent to them.
    pub(crate) async fn refresh(&mut self) -> Result<(), ConnError> {
        let t = topology::discover(&self.dialer, self.topology.as_ref()).await?;
        let nodes = t.nodes();
        self.conns.retain(|a, _| nodes.contains(a));
        if let Topology::Single(addr) = &t {
            if !self.conns.contains_key(addr) {
                let c = self.open(addr).await?;
                self.conns.insert(addr.clone(), c);
            }
        }
        self.topology = Some(t);
        self.stale = false;
        Ok(())
    }

    /// Forgets every connection (a standalone primary or a sentinel's was lost).
    pub(crate) fn reset(&mut self) {
        self.conns.clear();
        self.topology = None;
        self.stale = true;
    }

    /// A connection that answers, in Sentinel mode to a primary, with the scripts loaded.
    async fn open(&mut self, addr: &str) -> Result<Conn, ConnError> {
        let mut c = self.dialer.open(addr).await?;
        if matches!(self.dialer.deployment.mode, Mode::Sentinel { .. }) {
            topology::check_primary(&mut c, &self.dialer).await?;
        }
        let timeout = self.dialer.timeout;
        let replies = tokio::time::timeout(timeout, exchange(&mut c, &self.scripts.load()))
            .await
            .map_err(|_| ConnError::Timeout(addr.to_owned(), timeout))??;
        if !self.scripts.loaded(&replies) {
            return Err(ConnError::Refused(format!("SCRIPT LOAD gave {replies:?}")));
        }
        Ok(c)
    }

    /// Waits for anything a connection sends while no command is out (nothing is
    /// expected: it notices a node that went away). Never resolves without connections.
    pub(crate) async fn idle_read(&mut self) -> (String, Result<Value, ConnError>) {
        if self.conns.is_empty() {
            return std::future::pending().await;
        }
        let reads = self.conns.iter_mut().map(|(addr, c)| {
            Box::pin(async move {
                let r = c.read().await;
                (addr.clone(), r)
            })
        });
        futures_util::future::select_all(reads).await.0
    }

    /// Drops the connection to `addr` (it failed or said something unexpected).
    pub(crate) fn drop_conn(&mut self, addr: &str) {
        self.conns.remove(addr);
        self.stale = true;
    }

    /// Sends every command to its node and returns one [`Reply`] per command, in order.
    /// `failed` lists the nodes whose connection failed (and was dropped), and why.
    pub(crate) async fn round_trip(
        &mut self,
        cmds: &[Routed],
        failed: &mut Vec<(String, Unavailable)>,
    ) -> Vec<Reply> {
        let mut replies: Vec<Option<Reply>> = (0..cmds.len()).map(|_| None).collect();
        // (command index, node, after ASKING)
        let mut todo: Vec<(usize, String, bool)> = Vec::with_capacity(cmds.len());
        let Some(topology) = self.topology.as_ref() else {
            return cmds
                .iter()
                .map(|_| Reply::NotSent(Unavailable::Connecting))
                .collect();
        };
        for (i, c) in cmds.iter().enumerate() {
            match topology.node(c.slot) {
                Some(n) => todo.push((i, n.to_owned(), false)),
                None => {
                    replies[i] = Some(Reply::NotSent(Unavailable::Refused(format!(
                        "no redis cluster master serves slot {}",
                        c.slot
                    ))))
                }
            }
        }
        for round in 0..=MAX_REDIRECTS {
            if todo.is_empty() {
                break;
            }
            let mut by_node: Vec<(String, Vec<(usize, bool)>)> = Vec::new();
            for (i, node, asking) in todo.drain(..) {
                match by_node.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, v)) => v.push((i, asking)),
                    None => by_node.push((node, vec![(i, asking)])),
                }
            }
            // Connections are taken out of the map for the exchange and put back if
            // they are still good.
            let mut parts = Vec::with_capacity(by_node.len());
            for (node, idx) in by_node {
                let conn = match self.conns.remove(&node) {
                    Some(c) => Ok(c),
                    None => self.open(&node).await,
                };
                parts.push((node, idx, conn));
            }
            let timeout = self.dialer.timeout;
            let scripts = &self.scripts;
            let results = join_all(parts.into_iter().map(|(node, idx, conn)| async move {
                let mut conn = match conn {
                    Ok(c) => c,
                    Err(e) => return (node, idx, None, Err(Unavailable::connect(e))),
                };
                let mut bufs: Vec<Vec<u8>> = Vec::with_capacity(idx.len());
                for &(i, asking) in &idx {
                    if asking {
                        let mut b = Vec::new();
                        resp::command(&mut b, [&b"ASKING"[..]]);
                        bufs.push(b);
                    }
                    bufs.push(cmds[i].bytes.clone());
                }
                let io = exchange_scripts(&mut conn, scripts, &bufs);
                match tokio::time::timeout(timeout, io).await {
                    Ok(Ok(vals)) => (node, idx, Some(conn), Ok(Ok(vals))),
                    Ok(Err(e)) => (node, idx, None, Ok(Err(Uncertain::Lost(Arc::new(e))))),
                    Err(_) => (node, idx, None, Ok(Err(Uncertain::Timeout(timeout)))),
                }
            }))
            .await;
            for (node, idx, conn, result) in results {
                match result {
                    Err(why) => {
                        failed.push((node.clone(), why.clone()));
                        self.stale = true;
                        for (i, _) in idx {
                            replies[i] = Some(Reply::NotSent(why.clone()));
                        }
                    }
                    Ok(Err(why)) => {
                        failed.push((node.clone(), down_reason(&why)));
                        self.stale = true;
                        for (i, _) in idx {
                            replies[i] = Some(Reply::Lost(why.clone()));
                        }
                    }
                    Ok(Ok(vals)) => {
                        if let Some(c) = conn {
                            self.conns.insert(node.clone(), c);
                        }
                        let mut vals = vals.into_iter();
                        for (i, asking) in idx {
                            if asking {
                                vals.next(); // ASKING's +OK
                            }
                            let v = vals.next().unwrap_or(Value::Bulk(None));
                            match Redirect::of(&v).filter(|_| round < MAX_REDIRECTS) {
                                Some(Redirect::Moved(slot, addr)) => {
                                    if let Some(t) = self.topology.as_mut() {
                                        t.moved(slot, &addr);
                                    }
                                    self.stale = true;
                                    todo.push((i, addr, false));
                                }
                                Some(Redirect::Ask(_, addr)) => todo.push((i, addr, true)),
                                None => replies[i] = Some(Reply::Got(v)),
                            }
                        }
                    }
                }
            }
        }
        replies
            .into_iter()
            .map(|r| r.unwrap_or(Reply::NotSent(Unavailable::Connecting)))
            .collect()
    }

    /// Sends one command to the node of `slot`, best effort (this node leaving the
    /// stats hash on shutdown).
    pub(crate) async fn send_one(&mut self, slot: u16, cmd: &[u8]) {
        let Some(node) = self.topology.as_ref().and_then(|t| t.node(slot)) else {
            return;
        };
        let node = node.to_owned();
        if let Some(c) = self.conns.get_mut(&node) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                c.stream.write_all(cmd).await?;
                c.read().await
            })
            .await;
        }
    }
}

/// Why the node counts as down after a round trip on it failed.
fn down_reason(u: &Uncertain) -> Unavailable {
    match u {
        Uncertain::Timeout(d) => Unavailable::Stalled(*d),
        Uncertain::Lost(e) => Unavailable::Lost(e.clone()),
        Uncertain::Partial(s) => Unavailable::Refused(s.clone()),
    }
}

/// [`exchange`], and commands Redis answers `NOSCRIPT` (someone ran `SCRIPT FLUSH`, or
/// a promoted replica never loaded them) were not run: the scripts are loaded again
/// and those commands sent again, in order.
async fn exchange_scripts(
    c: &mut Conn,
    scripts: &Scripts,
    cmds: &[Vec<u8>],
) -> Result<Vec<Value>, ConnError> {
    let mut replies = exchange(c, cmds).await?;
    let again: Vec<usize> = (0..replies.len())
        .filter(|&i| script::is_noscript(&replies[i]))
        .collect();
    if !again.is_empty() {
        let loaded = exchange(c, &scripts.load()).await?;
        // The digests depend on the scripts' text only: the same on every node.
        if !scripts.loaded(&loaded) {
            return Err(ConnError::Refused(format!("SCRIPT LOAD: {loaded:?}")));
        }
        let retried: Vec<Vec<u8>> = again.iter().map(|&i| cmds[i].clone()).collect();
        let answers = exchange(c, &retried).await?;
        for (i, v) in again.into_iter().zip(answers) {
            replies[i] = v;
        }
    }
    Ok(replies)
}

/// Writes commands (one per buffer) at once and reads their replies.
pub(crate) async fn exchange(c: &mut Conn, cmds: &[Vec<u8>]) -> Result<Vec<Value>, ConnError> {
    let mut out = Vec::with_capacity(cmds.iter().map(Vec::len).sum());
    for cmd in cmds {
        out.extend_from_slice(cmd);
    }
    c.stream.write_all(&out).await?;
    let mut replies = Vec::with_capacity(cmds.len());
    for _ in 0..cmds.len() {
        replies.push(c.read().await?);
    }
    Ok(replies)
}
