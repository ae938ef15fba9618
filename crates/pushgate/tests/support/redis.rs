//! A real `redis-server` for the cluster tests, and `pushgate` nodes joined to it.
//! `redis-server` must be on the PATH: `make test` installs it (tests/deps.sh).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, http, metrics, Killed, Served, PORT_0};

pub const BIN: &str = env!("CARGO_BIN_EXE_pushgate");
pub const WAIT: Duration = Duration::from_secs(15);

/// Waits for a condition, polling, with a deadline ([`WAIT`]).
#[track_caller]
pub fn wait_for(ok: impl FnMut() -> bool) {
    wait_for_within(WAIT, ok)
}

#[track_caller]
pub fn wait_for_within(limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory removed when dropped (Redis's append-only file, node configs).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p =
            std::env::temp_dir().join(format!("pushgate-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` on a loopback port; killed when dropped.
pub struct Redis {
    child: Option<Killed>,
    pub port: u16,
    /// The user and password the test's own commands log in with (a sentinel whose
    /// default user has a password); `None`: the default user, no password.
    pub login: Option<(String, String)>,
    /// With persistence: every write is in the append-only file in this directory
    /// before Redis answers it (`appendfsync always`).
    dir: Option<PathBuf>,
}

impl Redis {
    /// Without persistence, on a free port.
    pub fn start() -> Redis {
        loop {
            let mut r = Redis::spawn(free_port(), &["--appendonly".into(), "no".into()], None);
            if r.came_up() {
                return r;
            }
        }
    }

    /// On `port`; with `dir`, persistent (append-only file, fsync on every write).
    pub fn start_on(port: u16, dir: Option<&Path>) -> Redis {
        let mut args: Vec<String> = Vec::new();
        match dir {
            Some(d) => args.extend(
                ["--appendonly", "yes", "--appendfsync", "always", "--dir"]
                    .map(String::from)
                    .into_iter()
                    .chain([d.to_str().unwrap().to_owned()]),
            ),
            None => args.extend(["--appendonly", "no"].map(String::from)),
        }
        let r = Redis::spawn(port, &args, dir);
        wait_for(|| r.command(&["PING"]).is_some_and(|s| s.starts_with("+PONG")));
        r
    }

    /// `redis-server --port <port> --bind 127.0.0.1 --save "" <args>`, not waited for.
    pub fn spawn(port: u16, args: &[String], dir: Option<&Path>) -> Redis {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(args);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed: run `bash tests/deps.sh` (make test does)");
        Redis {
            child: Some(Killed(child)),
            port,
            login: None,
            dir: dir.map(Path::to_path_buf),
        }
    }

    /// `redis-server <conf> --sentinel` (the config file must be writable: sentinels
    /// rewrite it), not waited for.
    pub fn spawn_sentinel(port: u16, conf: &Path) -> Redis {
        let child = Command::new("redis-server")
            .arg(conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed: run `bash tests/deps.sh` (make test does)");
        Redis {
            child: Some(Killed(child)),
            port,
            login: None,
            dir: None,
        }
    }

    /// Waits until it answers PING: true; false if it exited first, because its port
    /// was taken between `free_port` and its bind (by a client's ephemeral port, or
    /// another test's server), in which case the caller starts one on another port.
    pub fn came_up(&mut self) -> bool {
        let mut up = false;
        wait_for_within(Duration::from_secs(15), || {
            up = self
                .command(&["PING"])
                .is_some_and(|s| s.starts_with("+PONG"));
            up || self
                .child
                .as_mut()
                .is_some_and(|c| c.0.try_wait().ok().flatten().is_some())
        });
        up
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection to it, logged in with [`Redis::login`] if set.
    fn connect(&self) -> Option<TcpStream> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        if let Some((user, pw)) = &self.login {
            s.write_all(&encode(&["AUTH", user, pw])).ok()?;
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).ok()?;
            if !buf[..n].starts_with(b"+OK") {
                return None;
            }
        }
        Some(s)
    }

    /// Sends one command, returns the raw reply.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = self.connect()?;
        s.write_all(&encode(args)).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Sends one command whose reply is a bulk string and returns that string whole.
    pub fn command_full(&self, args: &[&str]) -> Option<String> {
        let mut s = self.connect()?;
        s.write_all(&encode(args)).ok()?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            let (head, body) = text.split_once("\r\n")?;
            let len: usize = head.strip_prefix('$')?.parse().ok()?;
            if body.len() >= len {
                return Some(body[..len].to_owned());
            }
        }
    }

    /// Nodes subscribed to a bus key (`PUBSUB SHARDNUMSUB`).
    pub fn subscribers(&self, key: &str) -> Option<u32> {
        let reply = self.command(&["PUBSUB", "SHARDNUMSUB", key])?;
        reply.lines().last()?.strip_prefix(':')?.parse().ok()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").0.id()
    }

    /// SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self) {
        drop(self.child.take());
    }

    /// Starts it again on the same port (and directory).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        *self = Redis::start_on(self.port, self.dir.as_deref());
    }

    /// SIGSTOP / SIGCONT: a Redis that holds its connections but answers nothing.
    pub fn pause(&self) {
        signal(self.pid(), "-STOP");
    }

    pub fn resume(&self) {
        signal(self.pid(), "-CONT");
    }
}

/// A command in RESP.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    cmd.into_bytes()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
    // A signal is delivered when the process next runs: wait until every thread of
    // it is in the state asked for (`T` stopped, anything else running), so that
    // what the test does next meets a stopped (or running) process.
    let stopped = sig == "-STOP";
    wait_for(|| {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        tasks.flatten().all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // `pid (comm) S ...`: the state follows the last ')'.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('T') == stopped
        })
    });
}

/// A gateway process joined to a Redis; killed when dropped.
pub struct Node {
    /// Killed when the value is dropped.
    _process: Served,
    pub id: String,
    pub ws: SocketAddr,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

impl Node {
    /// Starts a node and waits until it is ready (broker connected).
    pub fn start(id: &str, redis: &Redis) -> Node {
        Node::start_with(id, redis, None, &[])
    }

    /// With a TOML config file (for `[[history]]`) and more `--set` settings.
    pub fn start_with(id: &str, redis: &Redis, config: Option<&Path>, set: &[&str]) -> Node {
        Node::start_url(id, &redis.url(), config, set)
    }

    /// Joined to the Redis deployment `url` names (`redis_mode` among `set`).
    pub fn start_url(id: &str, url: &str, config: Option<&Path>, set: &[&str]) -> Node {
        let redis_url = format!("redis_url={url}");
        let mut all = vec!["broker=redis", &redis_url, "trusted_user_header=x-user"];
        all.extend_from_slice(set);
        Node::launch(id, config, &all)
    }

    /// A node on its own (`broker = "memory"`), for the single-node side of a test.
    pub fn start_alone(id: &str, config: Option<&Path>) -> Node {
        Node::launch(id, config, &[])
    }

    /// Starts `pushgate serve` on free ports with two shards, no drain window and
    /// `set`, and waits until it is ready.
    fn launch(id: &str, config: Option<&Path>, set: &[&str]) -> Node {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve");
        if let Some(c) = config {
            cmd.args(["--config", c.to_str().unwrap()]);
        }
        cmd.args(PORT_0)
            .args(["--shards", "2"])
            .args(["--set", &format!("node_id={id}")])
            .args(["--set", "drain_window_ms=0"]);
        for s in set {
            cmd.args(["--set", s]);
        }
        let p = Served::start(cmd);
        let node = Node {
            id: id.into(),
            ws: p.ws,
            http: p.http,
            grpc: p.grpc,
            _process: p,
        };
        node.wait_ready();
        node
    }

    /// Waits until `/readyz` says 200; if it never does, fails with what the node
    /// logged meanwhile (why its broker did not come up).
    #[track_caller]
    fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        while !self.ready() {
            if Instant::now() >= deadline {
                let log: Vec<String> = self._process.log.lock().unwrap().try_iter().collect();
                panic!(
                    "node {} not ready within {WAIT:?}; it logged:\n{}",
                    self.id,
                    log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn ready(&self) -> bool {
        http(self.http, "GET", "/readyz", b"").map(|r| r.0) == Some(200)
    }

    /// SIGSTOP / SIGCONT: a node that keeps its Redis connections but does nothing.
    pub fn pause(&self) {
        signal(self._process.child.0.id(), "-STOP");
    }

    pub fn resume(&self) {
        signal(self._process.child.0.id(), "-CONT");
    }

    /// The value of one metric line (`name{labels}` exactly as exported), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, text) = http(self.http, "GET", "/metrics", b"").expect("metrics");
        metrics::value(&text, series).unwrap_or(0.0)
    }
}
