//! A webhook receiver on 127.0.0.1:0 (a plain thread per connection, keep-alive
//! served): it answers 200 to every POST and keeps each event it carried, in arrival
//! order, with the path it was posted to (the tests give each node its own path, so
//! they know which node sent what) after checking the Pusher signature.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// One event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The path it was posted to.
    pub path: String,
    /// `channel_occupied`, `channel_vacated`, ...
    pub name: String,
    pub channel: String,
    /// The whole event (`user_id`, `data`, ...).
    pub event: Value,
}

/// The receiver; it runs until the test process ends.
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Hook>>>,
}

impl Receiver {
    /// Starts one; requests must be signed with `key` and `secret`.
    pub fn start(key: &str, secret: &str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (kept, key, secret) = (got.clone(), key.to_owned(), secret.to_owned());
        std::thread::spawn(move || {
            for sock in listener.incoming().flatten() {
                let (kept, key, secret) = (kept.clone(), key.clone(), secret.clone());
                std::thread::spawn(move || serve(sock, &kept, &key, &secret));
            }
        });
        Receiver { addr, got }
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every event received so far, in arrival order.
    pub fn events(&self) -> Vec<Hook> {
        self.got.lock().unwrap().clone()
    }

    /// The events received for `channel`, as (path, name).
    pub fn of(&self, channel: &str) -> Vec<(String, String)> {
        self.events()
            .into_iter()
            .filter(|h| h.channel == channel)
            .map(|h| (h.path, h.name))
            .collect()
    }

    /// How many events named `name` (`member_added`, ...) were received for `user_id`.
    pub fn count(&self, name: &str, user_id: &str) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.name == name && h.event["user_id"] == user_id)
            .count()
    }

    /// Whether a `client_event` whose data holds `tag` was received.
    pub fn client_event(&self, tag: &str) -> bool {
        self.got.lock().unwrap().iter().any(|h| {
            h.name == "client_event" && h.event["data"].as_str().is_some_and(|d| d.contains(tag))
        })
    }
}

/// Serves one connection's requests until it closes.
fn serve(sock: TcpStream, kept: &Mutex<Vec<Hook>>, key: &str, secret: &str) {
    let mut r = BufReader::new(sock);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
        let (mut len, mut got_key, mut signature) = (0, String::new(), String::new());
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(": ").unwrap_or((h, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => len = value.parse().unwrap(),
                "x-pusher-key" => got_key = value.into(),
                "x-pusher-signature" => signature = value.into(),
                _ => {}
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8(body).unwrap();
        assert_eq!(got_key, key);
        assert_eq!(signature, pushgate_pusher::api::sign(secret, &body));
        let v: Value = serde_json::from_str(&body).unwrap();
        let mut kept = kept.lock().unwrap();
        for e in v["events"].as_array().unwrap() {
            kept.push(Hook {
                path: path.clone(),
                name: e["name"].as_str().unwrap().to_owned(),
                channel: e["channel"].as_str().unwrap_or_default().to_owned(),
                event: e.clone(),
            });
        }
        drop(kept);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if r.get_mut().write_all(ok).is_err() {
            return;
        }
    }
}
