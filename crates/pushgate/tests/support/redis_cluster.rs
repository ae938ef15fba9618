//! A real Redis Cluster for the tests: six `redis-server --cluster-enabled yes` (three
//! masters, one replica each, made by `redis-cli --cluster create`), each with its
//! own directory and two free ports (client and cluster bus); killed when dropped.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::free_port;
use super::redis::{wait_for_within, Redis, TempDir};

pub struct RedisCluster {
    pub nodes: Vec<Redis>,
    _dir: TempDir,
}

/// A master and the slot ranges it serves.
#[derive(Debug, Clone)]
pub struct Master {
    pub port: u16,
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Three masters and three replicas; a node is marked failed after
    /// `node_timeout_ms` of silence (its replica then takes over).
    pub fn start(node_timeout_ms: u64) -> RedisCluster {
        RedisCluster::start_with(node_timeout_ms, |_| Vec::new())
    }

    /// The same, node `i` started with `extra(i)` arguments too (TLS, ACL users...);
    /// the cluster is made through the plain ports, which stay the test's own view.
    pub fn start_with(node_timeout_ms: u64, extra: impl Fn(usize) -> Vec<String>) -> RedisCluster {
        let dir = TempDir::new("redis-cluster");
        let nodes: Vec<Redis> = (0..6)
            .map(|i| loop {
                let (port, bus) = (free_port(), free_port());
                let d = dir.0.join(format!("n{i}"));
                std::fs::create_dir_all(&d).unwrap();
                let mut args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-config-file",
                    d.join("nodes.conf").to_str().unwrap(),
                    "--cluster-node-timeout",
                    &node_timeout_ms.to_string(),
                    "--dir",
                    d.to_str().unwrap(),
                    "--appendonly",
                    "no",
                    // A replica's first sync starts at once (the default waits 5 s
                    // for more replicas), and a replica takes over however long ago
                    // it last heard from its master (a loaded machine delays both).
                    "--repl-diskless-sync-delay",
                    "0",
                    "--cluster-replica-validity-factor",
                    "0",
                ]
                .map(String::from)
                .to_vec();
                args.extend(extra(i));
                let mut r = Redis::spawn(port, &args, Some(&d));
                // A port taken between free_port and the bind: again, on others.
                if r.came_up() {
                    break r;
                }
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let ok = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed (tests/deps.sh)")
            .success();
        assert!(ok, "redis-cli --cluster create failed");
        let c = RedisCluster { nodes, _dir: dir };
        c.wait_ok();
        c
    }

    /// Waits until every running node says the cluster is ok, three masters serve
    /// all slots, and every replica's link to its master is up (its first sync done).
    pub fn wait_ok(&self) {
        wait_for_within(Duration::from_secs(60), || {
            self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                n.command(&["CLUSTER", "INFO"])
                    .is_some_and(|s| s.contains("cluster_state:ok"))
                    && n.command_full(&["INFO", "replication"]).is_some_and(|s| {
                        s.contains("role:master") || s.contains("master_link_status:up")
                    })
            }) && self.masters().len() == 3
        });
    }

    /// `redis://127.0.0.1:<a>,127.0.0.1:<b>`: two seeds (any node will do).
    pub fn url(&self) -> String {
        format!(
            "redis://127.0.0.1:{},127.0.0.1:{}",
            self.nodes[0].port, self.nodes[4].port
        )
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &Redis {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
    }

    pub fn node_mut(&mut self, port: u16) -> &mut Redis {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
    }

    /// The masters serving slots, as a running node sees them (`CLUSTER NODES`).
    pub fn masters(&self) -> Vec<Master> {
        let Some(text) = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .find_map(|n| n.command_full(&["CLUSTER", "NODES"]))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port = f[1].split('@').next().and_then(|a| a.rsplit(':').next());
            let Some(port) = port.and_then(|p| p.parse().ok()) else {
                continue;
            };
            let slots: Vec<(u16, u16)> = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .filter_map(|r| match r.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => r.parse().ok().map(|s| (s, s)),
                })
                .collect();
            if !slots.is_empty() {
                out.push(Master { port, slots });
            }
        }
        out.sort_by_key(|m| m.port);
        out
    }

    /// The slot of a key (`CLUSTER KEYSLOT`).
    pub fn keyslot(&self, key: &str) -> u16 {
        let r = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .find_map(|n| n.command(&["CLUSTER", "KEYSLOT", key]));
        r.and_then(|s| s.trim().strip_prefix(':')?.parse().ok())
            .expect("CLUSTER KEYSLOT")
    }

    /// `per` names `<prefix><i>` for each of the three masters, by where the bus key
    /// of a channel of that name lands (its hash tag: every key of the channel is on
    /// the same master), with that master's port.
    pub fn spread(&self, prefix: &str, per: usize) -> Vec<(String, u16)> {
        self.spread_keys(prefix, per, |name| format!("pushgate:ch:{{{name}}}"))
    }

    /// The same for names whose key is `key(name)` (a user's bus key...).
    pub fn spread_keys(
        &self,
        prefix: &str,
        per: usize,
        key: impl Fn(&str) -> String,
    ) -> Vec<(String, u16)> {
        let masters = self.masters();
        assert_eq!(masters.len(), 3, "{masters:?}");
        let mut count = std::collections::HashMap::<u16, usize>::new();
        let mut out = Vec::new();
        for i in 0.. {
            let name = format!("{prefix}{i}");
            let master = self.master_of(&key(&name)).expect("a master");
            let n = count.entry(master).or_default();
            if *n < per {
                *n += 1;
                out.push((name, master));
            }
            if out.len() == per * 3 {
                break;
            }
        }
        out
    }

    /// The master port serving `key`.
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let slot = self.keyslot(key);
        self.masters()
            .into_iter()
            .find(|m| m.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|m| m.port)
    }
}
