//! pushgate on Redis over TLS with an ACL user, on a Redis Cluster over TLS with an
//! ACL user, and on a primary found through Sentinel, with logins on the data nodes
//! and on the sentinels themselves (docs/cluster.md, "Redis deployments"): real
//! `redis-server` processes, a CA and certificate made by `openssl` for the test,
//! WebSocket clients (tokio-tungstenite) that never reconnect.
//!
//! `redis-server` (built with TLS), `redis-cli` and `openssl` must be on the PATH:
//! `make test` installs them (tests/deps.sh).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::follower::{got_every_accepted, offsets_increase, publish, Follower};
use support::free_port;
use support::redis::{wait_for, wait_for_within, Node, Redis, TempDir, BIN};
use support::redis_cluster::RedisCluster;
use support::steady::{data_of, Steady};
use support::tls::{make_certs, redis_tls_args};

/// One test at a time: each runs several Redis processes and two nodes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The nodes' ACL user on the data nodes: only pushgate's keys and channels.
fn app_user() -> Vec<String> {
    [
        "--user",
        "app",
        "on",
        ">s3cret",
        "~pushgate:*",
        "&pushgate:*",
        "+@all",
    ]
    .map(String::from)
    .to_vec()
}

/// The data of every message until the publication whose data is `end` (inclusive).
async fn data_until(f: &mut Follower, end: &str) -> Vec<String> {
    f.until(end)
        .await
        .iter()
        .map(|m| m["data"].as_str().unwrap().to_owned())
        .collect()
}

/// How many connections the user `app` has on `redis`; each must be on port `port`.
#[track_caller]
fn app_connections_on(redis: &Redis, port: u16) -> usize {
    let clients = redis.command_full(&["CLIENT", "LIST"]).unwrap();
    let theirs: Vec<&str> = clients
        .lines()
        .filter(|l| l.contains(" user=app "))
        .collect();
    assert!(
        theirs
            .iter()
            .all(|l| l.contains(&format!("laddr=127.0.0.1:{port} "))),
        "{clients}"
    );
    theirs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_an_acl_user_joins_nodes_and_a_wrong_setup_exits_64() {
    let _one = SERIAL.lock().await;
    let dir = TempDir::new("redis-tls");
    make_certs(&dir.0);
    let (plain, tls) = (free_port(), free_port());
    let p = |f: &str| dir.0.join(f).to_str().unwrap().to_owned();
    let mut args = redis_tls_args(&dir.0, tls);
    args.extend(["--appendonly".into(), "no".into()]);
    args.extend(app_user());
    // The plain port is the test's own view (CLIENT LIST, PUBSUB); the nodes use TLS.
    let redis = Redis::spawn(plain, &args, None);
    wait_for(|| {
        redis
            .command(&["PING"])
            .is_some_and(|s| s.starts_with("+PONG"))
    });
    let url = format!("rediss://app:s3cret@127.0.0.1:{tls}");
    let ca = format!("redis_tls_ca_file={}", p("ca.crt"));
    let set = [ca.as_str(), "redis_timeout_ms=1000"];
    let nodes: Vec<Node> = ["n1", "n2"]
        .iter()
        .map(|id| Node::start_url(id, &url, None, &set))
        .collect();
    // Both nodes' connections are the ACL user's, on the TLS port.
    assert!(
        app_connections_on(&redis, tls) >= 4,
        "two per node at least"
    );

    let mut ws = Follower::start(&nodes[1], &["news".into()]).await;
    wait_for(|| redis.subscribers("pushgate:ch:{news}") == Some(1));
    for i in 0..20 {
        assert_eq!(publish(&nodes[0], "news", &format!("m{i}")), 200);
    }
    assert_eq!(publish(&nodes[0], "news", "end"), 200);
    let want: Vec<String> = (0..20)
        .map(|i| format!("m{i}"))
        .chain(["end".into()])
        .collect();
    assert_eq!(data_until(&mut ws, "end").await, want);

    // rediss:// without a CA, a CA file that is not there, a CA with redis://, a
    // sentinel password without sentinels: exit 64.
    for (url, more) in [
        (url.clone(), String::new()),
        (
            url.clone(),
            format!("redis_tls_ca_file = \"{}\"", p("missing.crt")),
        ),
        (
            format!("redis://127.0.0.1:{plain}"),
            format!("redis_tls_ca_file = \"{}\"", p("ca.crt")),
        ),
        (
            format!("redis://app:s3cret@127.0.0.1:{plain}"),
            "redis_sentinel_password = \"sentinel-s3cret\"".into(),
        ),
    ] {
        let file = dir.0.join("bad.toml");
        std::fs::write(
            &file,
            format!("broker = \"redis\"\nredis_url = \"{url}\"\n{more}\n"),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{url} {more}: {err}");
        assert!(err.contains("redis_"), "{err}");
        assert!(
            !err.contains("s3cret"),
            "the passwords are never shown: {err}"
        );
    }
}

/// A Redis Cluster of three masters and three replicas over TLS (clients, the cluster
/// bus and replication), the nodes logged in as an ACL user: every channel followed
/// on its own master, every publication delivered once, every connection the user's,
/// on a TLS port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_over_tls_with_an_acl_user_delivers_on_every_master() {
    let _one = SERIAL.lock().await;
    let dir = TempDir::new("redis-cluster-tls");
    make_certs(&dir.0);
    let tls: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let redis = RedisCluster::start_with(5000, |i| {
        let mut a = redis_tls_args(&dir.0, tls[i]);
        a.extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from));
        a.extend(app_user());
        a
    });
    // Through TLS, CLUSTER SLOTS names the masters' TLS ports.
    let url = format!(
        "rediss://app:s3cret@127.0.0.1:{},127.0.0.1:{}",
        tls[0], tls[3]
    );
    let ca = format!(
        "redis_tls_ca_file={}",
        dir.0.join("ca.crt").to_str().unwrap()
    );
    let set = [
        ca.as_str(),
        "redis_mode=cluster",
        "redis_timeout_ms=1000",
        "max_inbound_messages_per_sec=0",
    ];
    let nodes: Vec<Node> = ["n1", "n2"]
        .iter()
        .map(|id| Node::start_url(id, &url, None, &set))
        .collect();
    let spread = redis.spread("news:", 1);
    let channels: Vec<String> = spread.iter().map(|(c, _)| c.clone()).collect();
    let mut followers = Vec::new();
    for n in &nodes {
        followers.push(Follower::start(n, &channels).await);
    }
    for (ch, master) in &spread {
        let key = format!("pushgate:ch:{{{ch}}}");
        wait_for(|| redis.node(*master).subscribers(&key) == Some(2));
    }
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..30 {
        let ch = &channels[i % channels.len()];
        let data = format!("m{i}");
        assert_eq!(publish(&nodes[i % 2], ch, &data), 200);
        sent.entry(ch.clone()).or_default().push(data);
    }
    for ch in &channels {
        assert_eq!(publish(&nodes[0], ch, "end"), 200);
    }
    for f in &mut followers {
        let mut got: HashMap<String, Vec<String>> = HashMap::new();
        for m in f.until_each(&channels, "end").await {
            got.entry(m["channel"].as_str().unwrap().to_owned())
                .or_default()
                .push(m["data"].as_str().unwrap().to_owned());
        }
        assert_eq!(got, sent, "follower on {}", f.name);
    }
    // Every master has the nodes' connections (publisher and subscriber each), all
    // the ACL user's on its TLS port.
    for (i, r) in redis.nodes.iter().enumerate() {
        let n = app_connections_on(r, tls[i]);
        if spread.iter().any(|(_, m)| *m == r.port) {
            assert!(n >= 4, "master {}: {n} connections of app", r.port);
        }
    }
}

/// `redis-server --sentinel` with its own config file, watching `mymaster` on
/// `primary`, with `more` lines of config (its own login); the test's commands log in
/// with `login`.
fn sentinel(dir: &Path, port: u16, primary: u16, more: &str, login: Option<(&str, &str)>) -> Redis {
    let conf = dir.join(format!("sentinel-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n{more}\
             sentinel monitor mymaster 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 10000\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut r = Redis::spawn_sentinel(port, &conf);
    r.login = login.map(|(u, p)| (u.to_owned(), p.to_owned()));
    wait_for(|| r.command(&["PING"]).is_some_and(|s| s.starts_with("+PONG")));
    r
}

/// The primary's port as a sentinel names it.
fn named_primary(s: &Redis) -> Option<u16> {
    let r = s.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])?;
    r.lines().nth(4)?.parse().ok()
}

/// A primary and its replica (both with `args`), and three sentinels (with `more`
/// and `login`, as [`sentinel`]) that know both and each other.
struct Sentinels {
    primary: Redis,
    replica: Redis,
    sentinels: Vec<Redis>,
}

impl Sentinels {
    fn start(dir: &Path, args: &[String], more: &str, login: Option<(&str, &str)>) -> Sentinels {
        // The replica's first sync starts at once (the default waits 5 s).
        let mut base: Vec<String> = ["--appendonly", "no", "--repl-diskless-sync-delay", "0"]
            .map(String::from)
            .to_vec();
        base.extend(args.iter().cloned());
        let primary = Redis::spawn(free_port(), &base, None);
        wait_for(|| {
            primary
                .command(&["PING"])
                .is_some_and(|s| s.starts_with("+PONG"))
        });
        let mut replica_args = base.clone();
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ]);
        let replica = Redis::spawn(free_port(), &replica_args, None);
        wait_for(|| {
            replica
                .command(&["ROLE"])
                .is_some_and(|s| s.contains("connected"))
        });
        let sentinels: Vec<Redis> = (0..3)
            .map(|_| sentinel(dir, free_port(), primary.port, more, login))
            .collect();
        // Every sentinel knows the replica and the other sentinels before a failover.
        wait_for_within(Duration::from_secs(30), || {
            sentinels.iter().all(|s| {
                s.command(&["SENTINEL", "CKQUORUM", "mymaster"])
                    .is_some_and(|r| r.starts_with("+OK"))
                    && s.command(&["SENTINEL", "REPLICAS", "mymaster"])
                        .is_some_and(|r| r.contains(&replica.port.to_string()))
            })
        });
        Sentinels {
            primary,
            replica,
            sentinels,
        }
    }

    /// `redis://<login>127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>`
    fn url(&self, login: &str) -> String {
        let seeds: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis://{login}{}", seeds.join(","))
    }

    /// Kills the primary with SIGKILL; waits until every sentinel names the replica.
    fn fail_over(&mut self) {
        self.primary.kill();
        let replica = self.replica.port;
        wait_for_within(Duration::from_secs(60), || {
            self.sentinels
                .iter()
                .all(|s| named_primary(s) == Some(replica))
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_while_publishing_loses_no_accepted_publication() {
    let _one = SERIAL.lock().await;
    let dir = TempDir::new("redis-sentinel");
    let config = dir.0.join("pushgate.toml");
    std::fs::write(
        &config,
        "[[history]]\nchannels = \"chat:*\"\nsize = 100000\nttl_ms = 600000\n",
    )
    .unwrap();
    let mut s = Sentinels::start(&dir.0, &[], "", None);
    let set = [
        "redis_mode=sentinel",
        "redis_sentinel_master=mymaster",
        "redis_timeout_ms=1000",
        "max_inbound_messages_per_sec=0",
    ];
    let nodes: Vec<Node> = ["n1", "n2"]
        .iter()
        .map(|id| Node::start_url(id, &s.url(""), Some(&config), &set))
        .collect();
    let channels = vec!["chat:s".to_owned()];
    let mut followers = Vec::new();
    for n in &nodes {
        followers.push(Follower::start(n, &channels).await);
    }
    wait_for(|| s.primary.subscribers("pushgate:ch:{chat:s}") == Some(2));

    let steady = Steady::start(&nodes, &channels);
    steady.accepted_more(50, Duration::from_secs(60));
    s.fail_over();
    wait_for_within(Duration::from_secs(30), || {
        s.replica.subscribers("pushgate:ch:{chat:s}") == Some(2)
    });
    steady.accepted_more(50, Duration::from_secs(60));
    let answers = steady.stop();
    wait_for(|| publish(&nodes[0], "chat:s", "end") == 200);

    let mut ok = data_of(&answers, "chat:s", 200);
    ok.push("end");
    let refused = data_of(&answers, "chat:s", 503);
    assert!(!refused.is_empty(), "the failover refused publications");
    for (i, f) in followers.iter_mut().enumerate() {
        let who = format!("follower {i} on {}", f.name);
        let got = f.until("end").await;
        offsets_increase(&who, &got.iter().collect::<Vec<_>>());
        let data: Vec<&str> = got.iter().map(|m| m["data"].as_str().unwrap()).collect();
        got_every_accepted(&who, &data, &ok, &refused);
    }
}

/// Sentinel with logins everywhere: the data nodes' ACL user (`redis_url`) and the
/// sentinels' own ACL user (`redis_sentinel_username`/`_password`; their default user
/// has another password, so the nodes find the primary only by logging in as that
/// user), through a failover; and a node that logs in to the sentinels with their
/// `requirepass` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_data_nodes_with_their_own_acl_users_through_a_failover() {
    let _one = SERIAL.lock().await;
    let dir = TempDir::new("redis-sentinel-acl");
    let more = "requirepass sentinel-default-pw\n\
                user watcher on >w4tch +@all\n\
                sentinel sentinel-user watcher\n\
                sentinel sentinel-pass w4tch\n";
    let mut s = Sentinels::start(&dir.0, &app_user(), more, Some(("watcher", "w4tch")));
    let set = [
        "redis_mode=sentinel",
        "redis_sentinel_master=mymaster",
        "redis_sentinel_username=watcher",
        "redis_sentinel_password=w4tch",
        "redis_timeout_ms=1000",
    ];
    let url = s.url("app:s3cret@");
    let nodes: Vec<Node> = ["n1", "n2"]
        .iter()
        .map(|id| Node::start_url(id, &url, None, &set))
        .collect();
    // The nodes' connections to the primary are the data nodes' ACL user's.
    assert!(app_connections_on(&s.primary, s.primary.port) >= 4);
    let mut f = Follower::start(&nodes[1], &["news".into()]).await;
    wait_for(|| s.primary.subscribers("pushgate:ch:{news}") == Some(1));
    assert_eq!(publish(&nodes[0], "news", "before"), 200);
    assert_eq!(data_until(&mut f, "before").await, ["before"]);
    // The sentinels' default user with its password (`requirepass`), no user name.
    let only_password = [
        "redis_mode=sentinel",
        "redis_sentinel_master=mymaster",
        "redis_sentinel_password=sentinel-default-pw",
    ];
    let n3 = Node::start_url("n3", &url, None, &only_password);
    assert_eq!(publish(&n3, "news", "through n3"), 200);
    assert_eq!(data_until(&mut f, "through n3").await, ["through n3"]);
    drop(n3);

    s.fail_over();
    // The nodes asked the sentinels again (logged in) and follow on the new primary.
    wait_for_within(Duration::from_secs(30), || {
        s.replica.subscribers("pushgate:ch:{news}") == Some(1)
    });
    wait_for(|| publish(&nodes[0], "news", "after") == 200);
    assert_eq!(data_until(&mut f, "after").await, ["after"]);
    assert!(app_connections_on(&s.replica, s.replica.port) >= 2);
}
