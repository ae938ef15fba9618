//! Channel history through Redis, as docs/cluster.md ("History through Redis") says:
//! three `pushgate` processes on a real `redis-server`, WebSocket clients
//! (tokio-tungstenite) that never reconnect, and Redis killed, restarted without its
//! data, or paused while publishers keep publishing.
//!
//! `redis-server` must be on the PATH: `make test` installs it (tests/deps.sh).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use support::follower::{consecutive, got_every_accepted, Follower};
use support::http_with;
use support::redis::{wait_for, wait_for_within, Node, Redis, TempDir};
use support::steady::{data_of, Steady};

/// One test at a time: each runs Redis and three nodes (one of them 1,000 clients)
/// on what may be a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Redis (persistent or not) and three nodes with a history rule for `chat:*`.
struct Cluster {
    nodes: Vec<Node>,
    redis: Redis,
    _dir: TempDir,
}

impl Cluster {
    fn start(persistent: bool) -> Cluster {
        let dir = TempDir::new("history-cluster");
        let config = dir.0.join("pushgate.toml");
        std::fs::write(
            &config,
            "[[history]]\nchannels = \"chat:*\"\nsize = 100000\nttl_ms = 600000\n",
        )
        .unwrap();
        let data = dir.0.join("redis");
        std::fs::create_dir_all(&data).unwrap();
        let redis = Redis::start_on(support::free_port(), persistent.then_some(&*data));
        let set = ["redis_timeout_ms=1000", "max_inbound_messages_per_sec=0"];
        let nodes = ["n1", "n2", "n3"]
            .iter()
            .map(|id| Node::start_with(id, &redis, Some(&config), &set))
            .collect();
        Cluster {
            nodes,
            redis,
            _dir: dir,
        }
    }

    fn all_ready(&self) -> bool {
        self.nodes.iter().all(Node::ready)
    }

    /// Nodes following a channel on Redis.
    fn followers(&self, channel: &str) -> Option<u32> {
        self.redis
            .subscribers(&format!("pushgate:ch:{{{channel}}}"))
    }
}

/// `POST /publish?channel=...` (optionally with an `Idempotency-Key`): the status and
/// the body (0 if the request failed).
fn publish(node: &Node, channel: &str, data: &str, key: Option<&str>) -> (u16, String) {
    let header = key.map(|k| format!("Idempotency-Key: {k}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    let path = format!("/publish?channel={channel}");
    http_with(node.http, "POST", &path, &headers, data.as_bytes()).unwrap_or((0, String::new()))
}

/// Publishes until it is accepted (through Redis outages).
fn publish_ok(node: &Node, channel: &str, data: &str, key: Option<&str>) -> String {
    let mut answer = String::new();
    wait_for(|| {
        let (status, body) = publish(node, channel, data, key);
        answer = body;
        status == 200
    });
    answer
}

/// A client of one history channel (from `since`, if given) and its `subscribed` reply.
async fn follow(node: &Node, channel: &str, since: Option<&Value>) -> (Follower, Value) {
    Follower::start_since(node, &[channel.to_owned()], since).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_during_a_steady_publish_loses_and_duplicates_nothing() {
    let _one = SERIAL.lock().await;
    let mut c = Cluster::start(true);
    let mut followers = Vec::new();
    for n in &c.nodes {
        for _ in 0..2 {
            followers.push(follow(n, "chat:steady", None).await.0);
        }
    }
    wait_for(|| c.followers("chat:steady") == Some(3));

    // A steady publisher, one publication at a time, through the three nodes in turn.
    let channel = ["chat:steady".to_owned()];
    let steady = Steady::start(&c.nodes, &channel);
    steady.accepted_more(100, Duration::from_secs(30));
    for outage in [Duration::from_secs(2), Duration::from_secs(6)] {
        c.redis.kill();
        // The outage's length is the scenario, not a synchronisation.
        std::thread::sleep(outage);
        c.redis.restart();
        wait_for(|| c.all_ready());
        steady.accepted_more(100, Duration::from_secs(30));
    }
    let answers = steady.stop();
    publish_ok(&c.nodes[0], "chat:steady", "end", None);

    let mut ok = data_of(&answers, "chat:steady", 200);
    ok.push("end");
    let refused = data_of(&answers, "chat:steady", 503);
    assert!(!refused.is_empty(), "the outages refused publications");
    let mut first: Option<Vec<Value>> = None;
    for (i, f) in followers.iter_mut().enumerate() {
        let who = format!("follower {i} on {}", f.name);
        let got = f.until("end").await;
        assert!(got.iter().all(|m| m["type"] == "pub"), "{who}: {got:?}");
        consecutive(&who, &got);
        let data: Vec<&str> = got.iter().map(|m| m["data"].as_str().unwrap()).collect();
        // Accepted publications, each once, in the order they were accepted; the
        // others only if their outcome was uncertain (504), never if refused (503).
        got_every_accepted(&who, &data, &ok, &refused);
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "{who}: not what the first follower got"),
        }
    }
    let statuses: HashMap<u16, usize> = answers.iter().fold(HashMap::new(), |mut m, a| {
        *m.entry(a.status).or_default() += 1;
        m
    });
    let filled = "pushgate_broker_history_gap_publications_total";
    let gaps: Vec<f64> = c.nodes.iter().map(|n| n.metric(filled)).collect();
    eprintln!("answers by status: {statuses:?}; filled from Redis per node: {gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_its_data_tells_subscribers_unrecoverable() {
    let _one = SERIAL.lock().await;
    let mut c = Cluster::start(false);
    let mut followers = Vec::new();
    for n in &c.nodes {
        followers.push(follow(n, "chat:lost", None).await);
    }
    wait_for(|| c.followers("chat:lost") == Some(3));
    let old_epoch = followers[0].1["positions"]["chat:lost"]["epoch"].clone();
    for i in 1..=5 {
        publish_ok(&c.nodes[i % 3], "chat:lost", &format!("m{i}"), None);
    }
    for (f, _) in &mut followers {
        let got = f.until("m5").await;
        assert_eq!(got.len(), 5);
    }

    c.redis.kill();
    c.redis.restart(); // empty: no persistence
    wait_for(|| c.all_ready());
    // Each node found a new epoch when it followed the channel again.
    let reset = "pushgate_broker_history_syncs_total{result=\"reset\"}";
    wait_for(|| c.nodes.iter().all(|n| n.metric(reset) == 1.0));
    let answer: Value =
        serde_json::from_str(&publish_ok(&c.nodes[0], "chat:lost", "after", None)).unwrap();
    assert_eq!(answer["positions"]["chat:lost"]["offset"], 1, "{answer}");
    let mut new_epoch = None;
    for (f, _) in &mut followers {
        let got = f.until("after").await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0]["type"], "unrecoverable", "{}: {got:?}", f.name);
        assert_eq!(
            (&got[0]["channel"], &got[0]["offset"]),
            (&json!("chat:lost"), &json!(0))
        );
        assert_ne!(got[0]["epoch"], old_epoch);
        new_epoch.get_or_insert(got[0]["epoch"].clone());
        assert_eq!(answer["positions"]["chat:lost"]["epoch"], got[0]["epoch"]);
        assert_eq!(
            got[0]["epoch"],
            *new_epoch.as_ref().unwrap(),
            "one new epoch"
        );
        assert_eq!(
            (&got[1]["offset"], &got[1]["data"]),
            (&json!(1), &json!("after"))
        );
    }
    // Every metric a Redis node exports is described (`# HELP`).
    let (_, metrics) = support::http(c.nodes[0].http, "GET", "/metrics", b"").unwrap();
    for name in metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
    {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name}: no # HELP"
        );
    }
    // A client resuming from the lost history is told so; one from the new resumes.
    let old = json!({"epoch": old_epoch, "offset": 5});
    let (_, reply) = follow(&c.nodes[1], "chat:lost", Some(&old)).await;
    assert_eq!(reply["unrecovered"], json!(["chat:lost"]), "{reply}");
    let new = json!({"epoch": new_epoch.unwrap(), "offset": 0});
    let (mut f, reply) = follow(&c.nodes[2], "chat:lost", Some(&new)).await;
    assert_eq!(reply["recovered"], json!(["chat:lost"]), "{reply}");
    assert_eq!(f.next().await["data"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_is_not_ready_and_a_keyed_retry_is_delivered_once() {
    let _one = SERIAL.lock().await;
    let c = Cluster::start(false);
    let mut followers = Vec::new();
    for n in &c.nodes {
        followers.push(follow(n, "chat:pause", None).await.0);
    }
    wait_for(|| c.followers("chat:pause") == Some(3));
    publish_ok(&c.nodes[0], "chat:pause", "before", Some("before"));

    c.redis.pause();
    // Publications sent as Redis stops answering: written, not answered (504), or
    // refused once the node knows (503).
    let first: Vec<(String, u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..9)
            .map(|i| {
                let node = &c.nodes[i % 3];
                s.spawn(move || {
                    let k = format!("k{i}");
                    let (status, body) = publish(node, "chat:pause", &k, Some(&k));
                    (k, status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    wait_for_within(Duration::from_secs(8), || {
        c.nodes.iter().all(|n| !n.ready())
    });
    let later: Vec<(String, u16, String)> = (9..15)
        .map(|i| {
            let k = format!("k{i}");
            let (status, body) = publish(&c.nodes[i % 3], "chat:pause", &k, Some(&k));
            assert_eq!(status, 503, "refused while Redis does not answer: {body}");
            (k, status, body)
        })
        .collect();
    assert!(c.nodes[0].metric("pushgate_broker_publish_errors_total{outcome=\"refused\"}") >= 1.0);
    std::thread::sleep(Duration::from_secs(8)); // the rest of a 10 s pause
    c.redis.resume();
    wait_for(|| c.all_ready());

    // Retried with the same key: every uncertain one, and the refused ones with an
    // even number. The refused ones with an odd number are given up.
    let mut want: Vec<String> = vec!["before".into()];
    let mut never: Vec<String> = Vec::new();
    for (i, (k, status, body)) in first.iter().chain(&later).enumerate() {
        match status {
            200 => want.push(k.clone()),
            504 => {
                assert!(body.contains("outcome unknown"), "{body}");
                publish_ok(&c.nodes[(i + 1) % 3], "chat:pause", k, Some(k));
                want.push(k.clone());
            }
            503 if i % 2 == 0 => {
                publish_ok(&c.nodes[(i + 1) % 3], "chat:pause", k, Some(k));
                want.push(k.clone());
            }
            503 => never.push(k.clone()),
            other => panic!("{k}: status {other}: {body}"),
        }
    }
    // A retry of what was accepted is answered from the key, not published again.
    let again = publish_ok(&c.nodes[2], "chat:pause", "before", Some("before"));
    assert!(again.contains("\"duplicate\":true"), "{again}");
    publish_ok(&c.nodes[1], "chat:pause", "end", None);
    want.push("end".into());
    let uncertain = first.iter().filter(|a| a.1 == 504).count();
    eprintln!("uncertain answers while paused: {uncertain}");

    for f in &mut followers {
        let got = f.until("end").await;
        consecutive(&f.name, &got);
        let mut data: Vec<String> = got
            .iter()
            .map(|m| m["data"].as_str().unwrap().to_owned())
            .collect();
        for k in &never {
            assert!(!data.contains(k), "{}: refused {k} was delivered", f.name);
        }
        data.sort();
        let mut w = want.clone();
        w.sort();
        assert_eq!(data, w, "{}: each once", f.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_resume_at_once_while_publishing_goes_on() {
    let _one = SERIAL.lock().await;
    let c = Cluster::start(false);
    for i in 1..=300 {
        publish_ok(&c.nodes[i % 3], "chat:mass", &format!("m{i}"), None);
    }
    // Any node reads the history from Redis, followed there or not.
    let (status, page) = support::http(
        c.nodes[2].http,
        "GET",
        "/history?channel=chat:mass&since=296",
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{page}");
    let page: Value = serde_json::from_str(&page).unwrap();
    let offsets: Vec<u64> = page["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(
        (offsets, &page["offset"]),
        (vec![297, 298, 299, 300], &json!(300))
    );
    assert_eq!(page["publications"][0]["data"], "m297");
    let (_probe, reply) = follow(&c.nodes[0], "chat:mass", None).await;
    let position = &reply["positions"]["chat:mass"];
    assert_eq!(position["offset"], 300);
    assert_eq!(position["epoch"], page["epoch"]);
    let since = json!({"epoch": position["epoch"], "offset": 200});

    // 1,000 clients, a third on each node, come back 100 behind, all at once, while
    // 50 more are published.
    const CLIENTS: usize = 1000;
    let publisher = {
        let http: Vec<_> = c.nodes.iter().map(|n| n.http).collect();
        std::thread::spawn(move || {
            for i in 301..=350 {
                let data = format!("m{i}");
                let path = "/publish?channel=chat:mass";
                let r = http_with(http[i % 3], "POST", path, &[], data.as_bytes());
                assert_eq!(r.map(|r| r.0), Some(200));
            }
        })
    };
    let clients = (0..CLIENTS).map(|i| {
        let (node, since) = (&c.nodes[i % 3], since.clone());
        async move {
            let (mut f, reply) = follow(node, "chat:mass", Some(&since)).await;
            assert_eq!(
                reply["recovered"],
                json!(["chat:mass"]),
                "client {i}: {reply}"
            );
            let got = f.until_offset(350).await;
            let offsets: Vec<u64> = got.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
            assert_eq!(offsets, (201..=350).collect::<Vec<_>>(), "client {i}");
            f
        }
    });
    let done = futures_util::future::join_all(clients).await;
    assert_eq!(done.len(), CLIENTS);
    publisher.join().unwrap();
}
