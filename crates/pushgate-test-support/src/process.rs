//! Child processes of a test: killed and reaped when dropped; a gateway started on
//! port 0 reports the addresses it bound in its start line, so no test binds a port to
//! find a free one and releases it (a race with every other test).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// A child process (a gateway, a redis-server) killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The flags that make `pushgate serve` bind every listener on a port of its choosing.
pub const PORT_0: [&str; 6] = [
    "--ws-addr",
    "127.0.0.1:0",
    "--http-addr",
    "127.0.0.1:0",
    "--grpc-addr",
    "127.0.0.1:0",
];

/// A gateway process and the addresses it serves on.
pub struct Served {
    /// Killed when the value is dropped.
    pub child: Killed,
    pub ws: SocketAddr,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// The start line, as written to standard error.
    pub start_line: String,
    /// Its standard error after the start line, line by line (in a mutex, so that a
    /// `Served` can be shared between threads).
    pub log: Mutex<mpsc::Receiver<String>>,
}

impl Served {
    /// Spawns `cmd` (a `pushgate serve` with [`PORT_0`] among its arguments, text
    /// logs) and waits up to 20 s for its start line, `pushgate is serving
    /// ws_addr=.. http_addr=.. grpc_addr=..`. Its standard error is read for as long
    /// as it runs, so the process never blocks on a full pipe.
    pub fn start(mut cmd: Command) -> Served {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway starts");
        let err = child.stderr.take().expect("stderr is piped");
        let child = Killed(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end even when nobody listens any more: the gateway must
            // never block on a full pipe.
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let line = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains("pushgate is serving") => break l,
                Ok(l) => seen.push(l),
                Err(e) => panic!(
                    "no start line from the gateway ({e}); it said:\n{}",
                    seen.join("\n")
                ),
            }
        };
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in the start line: {line}"))
        };
        Served {
            ws: addr("ws_addr"),
            http: addr("http_addr"),
            grpc: addr("grpc_addr"),
            start_line: line.clone(),
            child,
            log: Mutex::new(rx),
        }
    }
}
