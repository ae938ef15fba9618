//! A webhook receiver on 127.0.0.1:0 for the Pusher tests: a thread that answers every
//! POST with 200 and keeps the events of each body (`{"time_ms":…,"events":[…]}`) in
//! arrival order. Independent of the test's runtime, so a test may poll it with
//! `wait_for`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub struct Hooks {
    /// `http://127.0.0.1:<port>/hooks`, for an app's `webhook_url`.
    pub url: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Hooks {
    pub fn start() -> Hooks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let events = Arc::new(Mutex::new(Vec::new()));
        let kept = events.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                let mut r = BufReader::new(sock);
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(": ") {
                        if name.eq_ignore_ascii_case("content-length") {
                            len = value.parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    continue;
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    if let Some(evs) = v["events"].as_array() {
                        kept.lock().unwrap().extend(evs.iter().cloned());
                    }
                }
                let _ = r.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Hooks { url, events }
    }

    /// How many events named `name` (`member_added`…) were received for `user_id`.
    pub fn count(&self, name: &str, user_id: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == name && e["user_id"] == user_id)
            .count()
    }

    /// Whether a `client_event` whose data holds `tag` was received.
    pub fn client_event(&self, tag: &str) -> bool {
        self.events.lock().unwrap().iter().any(|e| {
            e["name"] == "client_event" && e["data"].as_str().is_some_and(|d| d.contains(tag))
        })
    }
}
