//! A steady publisher for the failover tests: a thread that publishes `p<i>`, one
//! publication at a time (5 ms apart), through the nodes in turn, to the channels in
//! turn, and records every answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::http_with;
use super::redis::{wait_for_within, Node};

/// One publication and its HTTP status (0: no answer).
#[derive(Debug, Clone)]
pub struct Answer {
    pub channel: String,
    pub data: String,
    pub status: u16,
}

pub struct Steady {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Steady {
    pub fn start(nodes: &[Node], channels: &[String]) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let http: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
        let channels = channels.to_vec();
        let thread = {
            let (stop, answers, accepted) = (stop.clone(), answers.clone(), accepted.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let channel = channels[i % channels.len()].clone();
                    let data = format!("p{i}");
                    let path = format!("/publish?channel={channel}");
                    let status =
                        http_with(http[i % http.len()], "POST", &path, &[], data.as_bytes())
                            .map_or(0, |r| r.0);
                    if status == 200 {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    answers.lock().unwrap().push(Answer {
                        channel,
                        data,
                        status,
                    });
                    i += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Steady {
            stop,
            answers,
            accepted,
            thread: Some(thread),
        }
    }

    /// Waits until `n` more publications were accepted (within `limit`).
    #[track_caller]
    pub fn accepted_more(&self, n: usize, limit: Duration) {
        let target = self.accepted.load(Ordering::Relaxed) + n;
        wait_for_within(limit, || self.accepted.load(Ordering::Relaxed) >= target);
    }

    /// Publications to `channel` accepted so far.
    pub fn accepted_on(&self, channel: &str) -> usize {
        let answers = self.answers.lock().unwrap();
        answers
            .iter()
            .filter(|a| a.channel == channel && a.status == 200)
            .count()
    }

    /// Stops publishing; every answer, in the order sent.
    pub fn stop(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.answers.lock().unwrap().clone()
    }
}

impl Drop for Steady {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The data of the answers to `channel` with `status`, in the order sent.
pub fn data_of<'a>(answers: &'a [Answer], channel: &str, status: u16) -> Vec<&'a str> {
    answers
        .iter()
        .filter(|a| a.channel == channel && a.status == status)
        .map(|a| a.data.as_str())
        .collect()
}
