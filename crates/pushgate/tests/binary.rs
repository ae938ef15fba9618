//! The `pushgate` binary as an operator runs it: CLI, config errors, the README's
//! publish example, and surviving file-descriptor exhaustion.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use support::{http, metrics, request, Killed, Served, PORT_0};

const BIN: &str = env!("CARGO_BIN_EXE_pushgate");

/// A gateway process, killed when dropped.
type Node = Served;

/// Starts the binary on port 0, optionally under a lower open-files limit, and reads
/// the addresses it bound from its start line.
fn spawn(fd_limit: Option<u32>) -> Node {
    let serve = format!(
        "exec {BIN} serve {} --shards 2 --set pin_shards=false",
        PORT_0.join(" ")
    );
    let script = match fd_limit {
        Some(n) => format!("ulimit -n {n} && {serve}"),
        None => serve,
    };
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script);
    Served::start(cmd)
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http(addr, "GET", path, b"")
}

#[test]
fn bad_history_rules_exit_64_naming_history() {
    let dir = std::env::temp_dir().join(format!("pushgate-hist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, says) in [
        (
            "[[history]]\nchannels = \"chat:*\"\nsize = 100\nttl_ms = 60000\n",
            None,
        ),
        (
            "[[history]]\nchannels = \"a b*\"\nsize = 100\nttl_ms = 60000\n",
            Some("history"),
        ),
        (
            "[[history]]\nchannels = \"chat:*\"\nsize = 0\nttl_ms = 60000\n",
            Some("size"),
        ),
        (
            "[[history]]\nchannels = \"chat:*\"\nsize = 10\n",
            Some("ttl_ms"),
        ),
        (
            "[[history]]\nchannels = \"chat:*\"\nsize = 10\nttl_ms = 1\nkeep = true\n",
            Some("keep"),
        ),
        ("history_max_bytes = 10\n", Some("history_max_bytes")),
    ] {
        let file = dir.join("h.toml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BIN)
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        match says {
            None => assert!(out.status.success(), "{text}: {err}"),
            Some(word) => {
                assert_eq!(out.status.code(), Some(64), "{text}: {err}");
                assert!(err.contains(word), "{text}: {err}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_check_exits_64_naming_the_bad_field() {
    let dir = std::env::temp_dir().join(format!("pushgate-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "shards = 2\nslow_policy = \"drop_newest\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (text, field) in [
        ("slow_policy = \"ignore\"\n", "slow_policy"),
        ("shardz = 2\n", "shardz"),
    ] {
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let out = Command::new(BIN)
            .args(["config", "check"])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("bad.toml:1: "),
            "names the file and line: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(field),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Environment overrides reach `config print`; a bad one exits 64 too.
    let out = Command::new(BIN)
        .args(["config", "print"])
        .env("PUSHGATE_SHARDS", "3")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("shards = 3"));
    // ...with every secret redacted.
    let out = Command::new(BIN)
        .args(["config", "print"])
        .env("PUSHGATE_HTTP_TOKEN", "http-t0ken")
        .env("PUSHGATE_GRPC_TOKEN", "grpc-t0ken")
        .env(
            "PUSHGATE_JWT_HS256_SECRET",
            "jwt-s3cret-jwt-s3cret-jwt-s3cret-xx",
        )
        .env("PUSHGATE_REDIS_URL", "redis://app:redis-pw@127.0.0.1:6379")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    for secret in ["http-t0ken", "grpc-t0ken", "jwt-s3cret", "redis-pw"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    assert!(
        printed.contains("redis_url = \"redis://app:<redacted>@127.0.0.1:6379\""),
        "{printed}"
    );
    let out = Command::new(BIN)
        .args(["serve"])
        .env("PUSHGATE_HEARTBEAT_INTERVAL_MS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "environment variable PUSHGATE_HEARTBEAT_INTERVAL_MS: invalid heartbeat_interval_ms"
        ),
        "names the variable and the field: {err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A client connected to `node` that has followed `news` (both replies read).
async fn subscribed_to_news(node: &Node) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", node.ws))
        .await
        .unwrap();
    let _connected = ws.next().await.unwrap().unwrap();
    futures_util::SinkExt::send(
        &mut ws,
        Message::text(r#"{"type":"subscribe","channels":["news"]}"#),
    )
    .await
    .unwrap();
    let _subscribed = ws.next().await.unwrap().unwrap();
    ws
}

#[tokio::test]
async fn readme_publish_example_reaches_a_subscriber() {
    let node = spawn(None);
    let mut ws = subscribed_to_news(&node).await;
    let (status, body) = http(node.http, "POST", "/publish?channel=news", b"hello").unwrap();
    assert_eq!(status, 200, "{body}");
    // The README's answer, with gRPC's field names.
    assert_eq!(body, r#"{"enqueued":1,"nodes_accepted":1,"skipped":0}"#);
    let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        got.into_text().unwrap().as_str(),
        r#"{"type":"pub","channel":"news","data":"hello"}"#
    );
}

#[tokio::test]
async fn the_accept_loop_survives_running_out_of_file_descriptors() {
    // 64 descriptors: a few for the runtime, the rest for clients. Open more clients
    // than fit, then release them, and a new client must be served.
    let node = spawn(Some(64));
    let mut held = Vec::new();
    for _ in 0..120 {
        if let Ok(s) = TcpStream::connect(node.ws) {
            held.push(s);
        }
    }
    // Wait until the gateway has run out of descriptors (its internal API may be
    // refused now): releasing the clients before would let it keep up without ever
    // hitting EMFILE.
    let fds = format!("/proc/{}/fd", node.child.0.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&fds).map_or(0, |d| d.count()) < 62 {
        assert!(
            Instant::now() < deadline,
            "the gateway never ran out of descriptors"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_tungstenite::connect_async(format!("ws://{}/ws", node.ws)),
        )
        .await;
        if let Ok(Ok((mut ws, _))) = attempt {
            let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(first.into_text().unwrap().contains("connected"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gateway never recovered after descriptors were freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = http_get(node.http, "/metrics").unwrap().1;
    let exhausted = metrics::sum(&text, "pushgate_accept_errors_total", "fd_exhausted");
    assert!(exhausted >= 1.0, "EMFILE was hit and counted:\n{text}");
}

/// Runs `pushgate publish ARGS` against `node`, feeding `stdin`; returns (success, stdout, stderr).
fn publish_cli(node: &Node, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .arg("publish")
        .args(["--grpc", &format!("http://{}", node.grpc)])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn publish_command_sends_one_publication_or_streams_stdin_lines() {
    let node = spawn(None);
    let mut ws = subscribed_to_news(&node).await;
    let mut next_text = async || {
        tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .to_string()
    };

    let (ok, out, err) = publish_cli(&node, &["--channel", "news", "--data", "hello"], "");
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        r#"{"enqueued":1,"skipped":0,"nodes_accepted":1}"#
    );
    assert_eq!(
        next_text().await,
        r#"{"type":"pub","channel":"news","data":"hello"}"#
    );

    let (ok, out, err) = publish_cli(&node, &["--all"], "one\ntwo\nthree\n");
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        r#"{"sent":3,"accepted":3,"refused":0,"enqueued":3,"skipped":0}"#
    );
    for want in ["one", "two", "three"] {
        assert_eq!(
            next_text().await,
            format!(r#"{{"type":"pub","data":"{want}"}}"#)
        );
    }

    // A refused publication fails the command and says why.
    let (ok, _, err) = publish_cli(&node, &["--channel", "bad name", "--data", "x"], "");
    assert!(!ok);
    assert!(
        err.contains("InvalidArgument") && err.contains("bad name"),
        "{err}"
    );
    // No target at all is a usage error from the command line itself.
    let (ok, _, err) = publish_cli(&node, &["--data", "x"], "");
    assert!(!ok);
    assert!(err.contains("--all"), "{err}");
}

/// A `pushgate subscribe` process whose standard error is read line by line.
struct Subscriber {
    child: Killed,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Subscriber {
    fn start(node: &Node, args: &[&str]) -> Subscriber {
        let mut child = Command::new(BIN)
            .arg("subscribe")
            .args(["--url", &format!("ws://{}/ws", node.ws)])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Subscriber {
            child: Killed(child),
            stderr: rx,
        }
    }

    /// Waits for a status line containing `what`; returns it.
    fn status(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(e) => panic!("no status line with {what:?}: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn subscribe_command_prints_each_publication_and_resubscribes_after_a_disconnect() {
    let node = spawn(None);
    let mut sub = Subscriber::start(&node, &["--channel", "news", "--count", "2"]);
    let connected = sub.status("connected as ");
    let conn = connected.rsplit(' ').next().unwrap().to_owned();
    sub.status("following news");
    let (status, body) = http(node.http, "POST", "/publish?channel=news", b"one").unwrap();
    assert_eq!(status, 200, "{body}");

    // An operator disconnects it: it reconnects and follows the channel again.
    let mut grpc = pushgate_grpc::pb::pushgate_client::PushgateClient::connect(format!(
        "http://{}",
        node.grpc
    ))
    .await
    .unwrap();
    let r = grpc
        .disconnect(pushgate_grpc::pb::DisconnectRequest {
            who: Some(pushgate_grpc::pb::disconnect_request::Who::Conn(conn)),
            code: 0,
            reason: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.disconnected, 1);
    sub.status("close 4002");
    sub.status("following news");
    let (status, body) = http(node.http, "POST", "/publish?channel=news", b"two").unwrap();
    assert_eq!(status, 200, "{body}");

    let mut out = String::new();
    std::io::Read::read_to_string(sub.child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(
        sub.child.0.wait().unwrap().success(),
        "exits after --count 2"
    );
    assert_eq!(
        out,
        "{\"type\":\"pub\",\"channel\":\"news\",\"data\":\"one\"}\n\
         {\"type\":\"pub\",\"channel\":\"news\",\"data\":\"two\"}\n"
    );
}

#[test]
fn subscribe_command_stops_on_a_refusal_that_would_repeat() {
    let node = spawn(None);
    // Not a valid channel name: the gateway's error, not a retry loop.
    let out = Command::new(BIN)
        .args(["subscribe", "--url", &format!("ws://{}/ws", node.ws)])
        .args(["--channel", "bad name"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad_channel"), "{err}");
    // --user is refused by a gateway that trusts no user header, and says what to set.
    let out = Command::new(BIN)
        .args(["subscribe", "--url", &format!("ws://{}/ws", node.ws)])
        .args(["--user", "alice"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trusted_user_header"), "{err}");
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let node = spawn(None);
    assert!(!node.start_line.contains('\x1b'), "{:?}", node.start_line);
}

#[tokio::test]
async fn every_metric_is_described_and_probes_answer_plain_text() {
    let node = spawn(None);
    // Touch the publish path and a connection so that their metrics exist.
    let _ws = subscribed_to_news(&node).await;
    assert_eq!(
        http(node.http, "POST", "/publish?channel=news", b"x")
            .unwrap()
            .0,
        200
    );
    let metrics = http_get(node.http, "/metrics").unwrap().1;
    let typed: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(typed.len() > 20, "{metrics}");
    for name in typed {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no # HELP line (crates/pushgate-server/src/metric_help.rs)"
        );
    }
    assert!(
        metrics.contains("# TYPE pushgate_process_cpu_seconds_total counter"),
        "a _total is a counter"
    );
    for (path, want) in [
        ("/livez", "text/plain; charset=utf-8"),
        ("/readyz", "text/plain; charset=utf-8"),
        ("/metrics", "text/plain; version=0.0.4; charset=utf-8"),
    ] {
        let r = request(node.http, "GET", path, b"").unwrap();
        assert_eq!(r.header("content-type"), Some(want), "{path}");
    }
}

/// Runs `pushgate admin ARGS` against `node`; returns the reply as JSON.
fn admin(node: &Node, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("admin")
        .args(args)
        .args(["--grpc", &node.grpc.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn admin_commands_make_the_operator_calls_without_grpcurl() {
    let node = spawn(None);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", node.ws))
        .await
        .unwrap();
    let connected = ws.next().await.unwrap().unwrap().into_text().unwrap();
    let connected: serde_json::Value = serde_json::from_str(&connected).unwrap();
    let conn = connected["conn"].as_str().unwrap().to_owned();

    let stats = admin(&node, &["stats"]);
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(stats["cluster"][0]["node_id"], "n1", "{stats}");
    let p = admin(&node, &["presence", "--channel", "sport"]);
    assert_eq!(p["channels"][0]["subscribers"], 0, "{p}");

    let r = admin(&node, &["subscribe", "--conn", &conn, "--channel", "sport"]);
    assert_eq!(r["conns"], 1, "{r}");
    let p = admin(&node, &["presence", "--channel", "sport"]);
    assert_eq!(p["channels"][0]["subscribers"], 1, "{p}");
    assert_eq!(
        http(node.http, "POST", "/publish?channel=sport", b"goal")
            .unwrap()
            .0,
        200
    );
    let got = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert_eq!(
        got.as_str(),
        r#"{"type":"pub","channel":"sport","data":"goal"}"#
    );
    let r = admin(
        &node,
        &["unsubscribe", "--conn", &conn, "--channel", "sport"],
    );
    assert_eq!(r["conns"], 1, "{r}");

    let r = admin(&node, &["disconnect", "--conn", &conn, "--reason", "bye"]);
    assert_eq!(r["disconnected"], 1, "{r}");
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(f)) => {
            assert_eq!(u16::from(f.code), 4002);
            assert_eq!(f.reason.as_str(), "bye");
        }
        other => panic!("{other:?}"),
    }
}
