//! pushgate on Redis over TLS with an ACL user, and on a primary found through
//! Sentinel (docs/cluster.md, "Redis deployments"): real `redis-server` processes, a
//! CA and certificate made by `openssl` for the test, WebSocket clients
//! (tokio-tungstenite) that never reconnect.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use support::redis::{wait_for, wait_for_within, Node, Redis, TempDir, BIN, WAIT};
use support::{free_port, http_with};

/// One test at a time: each runs several Redis processes and two nodes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(node: &Node, channel: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", node.ws))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await["type"], "connected");
    let cmd = json!({"type": "subscribe", "channels": [channel]});
    ws.send(Message::text(cmd.to_string())).await.unwrap();
    let reply = next(&mut ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    ws
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("connection open")
            .expect("a valid frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Publications until the one whose data is `end`.
async fn until(ws: &mut Ws, end: &str) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let m = next(ws).await;
        let done = m["data"] == end;
        got.push(m);
        if done {
            return got;
        }
    }
}

fn publish(node: &Node, channel: &str, data: &str) -> u16 {
    let path = format!("/publish?channel={channel}");
    http_with(node.http, "POST", &path, &[], data.as_bytes()).map_or(0, |r| r.0)
}

/// A CA and a certificate for 127.0.0.1 signed by it (`openssl`, EC P-256).
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=pushgate test CA",
    ]);
    run(&a);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "redis.key",
        "-out",
        "redis.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&a);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_an_acl_user_joins_nodes_and_a_wrong_setup_exits_64() {
    let _one = SERIAL.lock().await;
    let dir = TempDir::new("redis-tls");
    make_certs(&dir.0);
    let (plain, tls) = (free_port(), free_port());
    let p = |f: &str| dir.0.join(f).to_str().unwrap().to_owned();
    let args: Vec<String> = vec![
        "--tls-port".into(),
        tls.to_string(),
        "--tls-cert-file".into(),
        p("redis.crt"),
        "--tls-key-file".into(),
        p("redis.key"),
        "--tls-ca-cert-file".into(),
        p("ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
        "--appendonly".into(),
        "no".into(),
        // The nodes' ACL user: only pushgate's keys and channels.
        "--user".into(),
        "app".into(),
        "on".into(),
        ">s3cret".into(),
        "~pushgate:*".into(),
        "&pushgate:*".into(),
        "+@all".into(),
    ];
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
    let clients = redis.command_full(&["CLIENT", "LIST"]).unwrap();
    let theirs: Vec<&str> = clients
        .lines()
        .filter(|l| l.contains(" user=app "))
        .collect();
    assert!(theirs.len() >= 4, "two connections per node: {clients}");
    assert!(
        theirs
            .iter()
            .all(|l| l.contains(&format!("laddr=127.0.0.1:{tls} "))),
        "{clients}"
    );

    let mut ws = subscribe(&nodes[1], "news").await;
    wait_for(|| redis.subscribers("pushgate:ch:{news}") == Some(1));
    for i in 0..20 {
        assert_eq!(publish(&nodes[0], "news", &format!("m{i}")), 200);
    }
    assert_eq!(publish(&nodes[0], "news", "end"), 200);
    let got: Vec<String> = until(&mut ws, "end")
        .await
        .iter()
        .map(|m| m["data"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..20)
        .map(|i| format!("m{i}"))
        .chain(["end".into()])
        .collect();
    assert_eq!(got, want);

    // rediss:// without a CA, a CA file that is not there, a CA with redis://: exit 64.
    for (url, ca) in [
        (url.clone(), String::new()),
        (url.clone(), p("missing.crt")),
        (format!("redis://127.0.0.1:{plain}"), p("ca.crt")),
    ] {
        let file = dir.0.join("bad.toml");
        std::fs::write(
            &file,
            format!("broker = \"redis\"\nredis_url = \"{url}\"\nredis_tls_ca_file = \"{ca}\"\n"),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{url} {ca}: {err}");
        assert!(err.contains("redis_"), "{err}");
        assert!(
            !err.contains("s3cret"),
            "the password is never shown: {err}"
        );
    }
}

/// `redis-server --sentinel` with its own config file, watching `master` on `primary`.
fn sentinel(dir: &Path, port: u16, primary: u16) -> Redis {
    let conf = dir.join(format!("sentinel-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor mymaster 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 10000\n",
            dir.display()
        ),
    )
    .unwrap();
    let r = Redis::spawn_sentinel(port, &conf);
    wait_for(|| r.command(&["PING"]).is_some_and(|s| s.starts_with("+PONG")));
    r
}

/// The primary's port as a sentinel names it.
fn named_primary(s: &Redis) -> Option<u16> {
    let r = s.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])?;
    r.lines().nth(4)?.parse().ok()
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
    // The replica's first sync starts at once (the default waits 5 s).
    let no_aof: Vec<String> = ["--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        .map(String::from)
        .to_vec();
    let mut primary = Redis::spawn(free_port(), &no_aof, None);
    wait_for(|| {
        primary
            .command(&["PING"])
            .is_some_and(|s| s.starts_with("+PONG"))
    });
    let mut replica_args = no_aof.clone();
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
        .map(|_| sentinel(&dir.0, free_port(), primary.port))
        .collect();
    // Every sentinel knows the replica and the other sentinels before the failover.
    wait_for_within(Duration::from_secs(30), || {
        sentinels.iter().all(|s| {
            s.command(&["SENTINEL", "CKQUORUM", "mymaster"])
                .is_some_and(|r| r.starts_with("+OK"))
                && s.command(&["SENTINEL", "REPLICAS", "mymaster"])
                    .is_some_and(|r| r.contains(&replica.port.to_string()))
        })
    });
    let url = format!(
        "redis://{}",
        sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    );
    let set = [
        "redis_mode=sentinel",
        "redis_sentinel_master=mymaster",
        "redis_timeout_ms=1000",
        "max_inbound_messages_per_sec=0",
    ];
    let nodes: Vec<Node> = ["n1", "n2"]
        .iter()
        .map(|id| Node::start_url(id, &url, Some(&config), &set))
        .collect();
    let mut clients = Vec::new();
    for n in &nodes {
        clients.push(subscribe(n, "chat:s").await);
    }
    wait_for(|| primary.subscribers("pushgate:ch:{chat:s}") == Some(2));

    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (stop, answers, accepted) = (stop.clone(), answers.clone(), accepted.clone());
        let http: Vec<_> = nodes.iter().map(|n| n.http).collect();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let data = format!("p{i}");
                let status = http_with(
                    http[i % 2],
                    "POST",
                    "/publish?channel=chat:s",
                    &[],
                    data.as_bytes(),
                )
                .map_or(0, |r| r.0);
                if status == 200 {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                answers.lock().unwrap().push((data, status));
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let accepted_more = |n: usize| {
        let target = accepted.load(Ordering::Relaxed) + n;
        wait_for_within(Duration::from_secs(60), || {
            accepted.load(Ordering::Relaxed) >= target
        });
    };
    accepted_more(50);
    let old = primary.port;
    primary.kill();
    wait_for_within(Duration::from_secs(60), || {
        sentinels
            .iter()
            .all(|s| named_primary(s) == Some(replica.port))
    });
    wait_for_within(Duration::from_secs(30), || {
        replica.subscribers("pushgate:ch:{chat:s}") == Some(2)
    });
    accepted_more(50);
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    wait_for(|| publish(&nodes[0], "chat:s", "end") == 200);

    let answers = answers.lock().unwrap().clone();
    let ok: Vec<&str> = answers
        .iter()
        .filter(|a| a.1 == 200)
        .map(|a| a.0.as_str())
        .chain(["end"])
        .collect();
    assert!(
        answers.iter().any(|a| a.1 == 503),
        "the failover refused publications (old primary {old})"
    );
    for (i, ws) in clients.iter_mut().enumerate() {
        let got = until(ws, "end").await;
        for w in got.windows(2) {
            assert!(
                w[0]["offset"].as_u64() < w[1]["offset"].as_u64(),
                "client {i}: {} then {}",
                w[0],
                w[1]
            );
        }
        let data: Vec<&str> = got.iter().map(|m| m["data"].as_str().unwrap()).collect();
        let delivered_ok: Vec<&str> = data.iter().copied().filter(|d| ok.contains(d)).collect();
        assert_eq!(delivered_ok, ok, "client {i}: accepted publications");
    }
}
