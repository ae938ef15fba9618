//! pushgate on a real Redis Cluster (docs/cluster.md, "Redis deployments"): three
//! masters and three replicas (`redis-server --cluster-enabled yes` ×6, made by
//! `redis-cli --cluster create`), three `pushgate` nodes with `redis_mode = "cluster"`,
//! WebSocket clients (tokio-tungstenite) that never reconnect.
//!
//! `redis-server` and `redis-cli` must be on the PATH: `make test` installs them
//! (tests/deps.sh).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use support::follower::{got_every_accepted, offsets_increase, publish, Follower};
use support::redis::{wait_for, wait_for_within, Node, TempDir};
use support::redis_cluster::RedisCluster;
use support::steady::{data_of, Steady};

/// One test at a time: each runs six Redis processes and three nodes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A Redis Cluster and three nodes joined through it, with a history rule for `chat:*`.
struct Gateway {
    nodes: Vec<Node>,
    redis: RedisCluster,
    _dir: TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        let redis = RedisCluster::start(1000);
        let dir = TempDir::new("redis-cluster-gw");
        let config = dir.0.join("pushgate.toml");
        std::fs::write(
            &config,
            "[[history]]\nchannels = \"chat:*\"\nsize = 100000\nttl_ms = 600000\n",
        )
        .unwrap();
        let set = [
            "redis_mode=cluster",
            "redis_timeout_ms=1000",
            "max_inbound_messages_per_sec=0",
        ];
        let nodes = ["n1", "n2", "n3"]
            .iter()
            .map(|id| Node::start_url(id, &redis.url(), Some(&config), &set))
            .collect();
        Gateway {
            nodes,
            redis,
            _dir: dir,
        }
    }
}

fn bus_key(channel: &str) -> String {
    format!("pushgate:ch:{{{channel}}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_every_master_and_each_publication_arrives_once() {
    let _one = SERIAL.lock().await;
    let g = Gateway::start();
    let spread = g.redis.spread("room:", 2);
    let channels: Vec<String> = spread.iter().map(|(c, _)| c.clone()).collect();
    let mut clients = Vec::new();
    for n in &g.nodes {
        for _ in 0..2 {
            clients.push(Follower::start(n, &channels).await);
        }
    }
    // Each channel is followed on its own master by all three nodes, on no other.
    let masters: Vec<u16> = g.redis.masters().iter().map(|m| m.port).collect();
    for (ch, master) in &spread {
        wait_for(|| g.redis.node(*master).subscribers(&bus_key(ch)) == Some(3));
        for m in masters.iter().filter(|m| *m != master) {
            assert_eq!(
                g.redis.node(*m).subscribers(&bus_key(ch)),
                Some(0),
                "{ch} on {m}"
            );
        }
    }
    let used: std::collections::HashSet<u16> = spread.iter().map(|s| s.1).collect();
    assert_eq!(used.len(), 3, "channels on every master: {spread:?}");

    // Through every node in turn, to every channel in turn.
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..120 {
        let ch = &channels[i % channels.len()];
        let data = format!("m{i}");
        assert_eq!(publish(&g.nodes[i % 3], ch, &data), 200);
        sent.entry(ch.clone()).or_default().push(data);
    }
    for ch in &channels {
        assert_eq!(publish(&g.nodes[0], ch, "end"), 200);
    }
    for c in &mut clients {
        let got = c.until_each(&channels, "end").await;
        let mut by_channel: HashMap<String, Vec<String>> = HashMap::new();
        for m in got {
            let ch = m["channel"].as_str().unwrap().to_owned();
            by_channel
                .entry(ch)
                .or_default()
                .push(m["data"].as_str().unwrap().to_owned());
        }
        // Each once, in the order published (one master per channel).
        assert_eq!(by_channel, sent, "client on {}", c.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_while_publishing_loses_no_accepted_publication_of_a_history_channel() {
    let _one = SERIAL.lock().await;
    let mut g = Gateway::start();
    let spread = g.redis.spread("chat:", 1);
    let channels: Vec<String> = spread.iter().map(|(c, _)| c.clone()).collect();
    let mut clients = Vec::new();
    for n in &g.nodes {
        clients.push(Follower::start(n, &channels).await);
    }
    for (ch, master) in &spread {
        wait_for(|| g.redis.node(*master).subscribers(&bus_key(ch)) == Some(3));
    }

    // A steady publisher, one publication at a time, through the nodes in turn, to the
    // channels in turn.
    let steady = Steady::start(&g.nodes, &channels);
    steady.accepted_more(60, Duration::from_secs(60));
    // kill -9 the master of the first channel; its replica takes over.
    let victim = spread[0].1;
    g.redis.node_mut(victim).kill();
    wait_for_within(Duration::from_secs(60), || {
        g.redis
            .master_of(&bus_key(&channels[0]))
            .is_some_and(|m| m != victim)
    });
    let promoted = g.redis.master_of(&bus_key(&channels[0])).unwrap();
    // Every node follows the channel on the promoted replica again.
    wait_for_within(Duration::from_secs(30), || {
        g.redis.node(promoted).subscribers(&bus_key(&channels[0])) == Some(3)
    });
    // ...and publications to it are accepted again.
    let before = steady.accepted_on(&channels[0]);
    wait_for_within(Duration::from_secs(30), || {
        steady.accepted_on(&channels[0]) >= before + 20
    });
    steady.accepted_more(30, Duration::from_secs(60));
    let answers = steady.stop();
    for ch in &channels {
        wait_for(|| publish(&g.nodes[0], ch, "end") == 200);
    }

    assert!(
        answers.iter().any(|a| a.status == 503),
        "the failover refused publications to the dead master's slots"
    );
    for c in &mut clients {
        let got = c.until_each(&channels, "end").await;
        for ch in &channels {
            let who = format!("client on {} for {ch}", c.name);
            let mine: Vec<&Value> = got.iter().filter(|m| m["channel"] == ch.as_str()).collect();
            offsets_increase(&who, &mine);
            let data: Vec<&str> = mine.iter().map(|m| m["data"].as_str().unwrap()).collect();
            // Every accepted publication, in the order accepted; a refused one never.
            let ok = data_of(&answers, ch, 200);
            let refused = data_of(&answers, ch, 503);
            got_every_accepted(&who, &data, &ok, &refused);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_to_another_master_is_followed_there_without_losing_history() {
    let _one = SERIAL.lock().await;
    let g = Gateway::start();
    let ch = "chat:moving".to_owned();
    let key = bus_key(&ch);
    let slot = g.redis.keyslot(&key).to_string();
    let src = g.redis.master_of(&key).unwrap();
    let dst = g
        .redis
        .masters()
        .iter()
        .map(|m| m.port)
        .find(|p| *p != src)
        .unwrap();
    let mut clients = Vec::new();
    for n in &g.nodes {
        clients.push(Follower::start(n, std::slice::from_ref(&ch)).await);
    }
    wait_for(|| g.redis.node(src).subscribers(&key) == Some(3));
    let mut ok = Vec::new();
    let mut i = 0;
    let mut publish_some = |n: usize, ok: &mut Vec<String>| {
        for _ in 0..n {
            let data = format!("m{i}");
            if publish(&g.nodes[i % 3], &ch, &data) == 200 {
                ok.push(data);
            }
            i += 1;
        }
    };
    publish_some(20, &mut ok);

    // Move the slot by hand, as `redis-cli --cluster reshard` does: IMPORTING on the
    // target, MIGRATING on the source, MIGRATE its keys, then give it to the target.
    let id = |p: u16| g.redis.node(p).command(&["CLUSTER", "MYID"]).unwrap();
    let id_of = |p: u16| id(p).lines().nth(1).unwrap().to_owned();
    let (src_id, dst_id) = (id_of(src), id_of(dst));
    let ok_reply =
        |r: Option<String>| assert!(r.as_deref().is_some_and(|r| r.starts_with("+OK")), "{r:?}");
    ok_reply(
        g.redis
            .node(dst)
            .command(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src_id]),
    );
    ok_reply(
        g.redis
            .node(src)
            .command(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst_id]),
    );
    // Publications while the slot is migrating (answered from the source, or ASK).
    publish_some(10, &mut ok);
    let keys = g
        .redis
        .node(src)
        .command(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"])
        .unwrap();
    let keys: Vec<&str> = keys
        .lines()
        .filter(|l| l.starts_with("pushgate:"))
        .collect();
    assert!(
        !keys.is_empty(),
        "the channel's stream and meta hash are in the slot"
    );
    let dst_port = dst.to_string();
    let mut migrate = vec!["MIGRATE", "127.0.0.1", &dst_port, "", "0", "5000", "KEYS"];
    migrate.extend(keys.iter().copied());
    ok_reply(g.redis.node(src).command(&migrate));
    for m in g.redis.masters() {
        ok_reply(
            g.redis
                .node(m.port)
                .command(&["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id]),
        );
    }
    // Redis unsubscribes the nodes on the source; they follow the key on the target.
    wait_for_within(Duration::from_secs(30), || {
        g.redis.node(dst).subscribers(&key) == Some(3)
            && g.redis.node(src).subscribers(&key) == Some(0)
    });
    publish_some(20, &mut ok);
    assert!(
        ok.len() >= 40,
        "publications accepted around the move: {}",
        ok.len()
    );
    wait_for(|| publish(&g.nodes[0], &ch, "end") == 200);
    for c in &mut clients {
        let got = c.until_each(std::slice::from_ref(&ch), "end").await;
        offsets_increase(&c.name, &got.iter().collect::<Vec<_>>());
        let data: Vec<&str> = got.iter().map(|m| m["data"].as_str().unwrap()).collect();
        let delivered_ok: Vec<&str> = data
            .iter()
            .copied()
            .filter(|d| ok.iter().any(|o| o == d))
            .collect();
        assert_eq!(delivered_ok, ok, "client on {}", c.name);
    }
}
