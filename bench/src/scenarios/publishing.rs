//! The publishing phase of a scenario: one payload per sequence number, paced,
//! pipelined over HTTP, or on one gRPC `PublishStream`, and what was accepted.

use super::*;
use crate::pusher;

/// Outcome of the publishing phase.
#[derive(Debug, Default)]
pub(super) struct Published {
    /// Per seq: the server answered 200 (202 to `Prefer: respond-async`).
    pub(super) accepted: Vec<bool>,
    pub(super) rejected: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    pub(super) first_ns: u64,
    pub(super) last_ns: u64,
}

impl Published {
    pub(super) fn count(&self) -> u64 {
        self.accepted.iter().filter(|a| **a).count() as u64
    }
}

/// Per-seq request path: the publish URL's own, or a channel publication.
pub(super) fn publish_paths(
    cfg: &RunConfig,
    ep: &Endpoint,
    messages: usize,
) -> (Vec<Option<String>>, Vec<usize>) {
    if !cfg.scenario.subscribes() {
        return (vec![None; messages], Vec::new());
    }
    let chans: Vec<usize> = (0..messages)
        .map(|s| client::channels_for(1_000_000_007 + s, cfg.channels, 1)[0])
        .collect();
    let paths = chans
        .iter()
        .map(|c| {
            Some(format!(
                "{}?channel={}",
                ep.path_only(),
                client::channel_name(*c)
            ))
        })
        .collect();
    (paths, chans)
}

/// Publish one payload per entry of `paths`. `rate` None: as fast as the
/// server takes them, pipelined over `publishers` keep-alive connections;
/// Some(r): one request at a time, paced at r per second.
#[allow(clippy::too_many_arguments)]
pub(super) async fn publish(
    ep: &Endpoint,
    grpc: Option<&Endpoint>,
    paths: &[Option<String>],
    size: usize,
    publishers: usize,
    pipeline: usize,
    respond_async: bool,
    rate: Option<f64>,
    pusher: Option<&pusher::App>,
) -> Published {
    let state = Rc::new(RefCell::new(Published {
        accepted: vec![false; paths.len()],
        ..Default::default()
    }));
    match (rate, grpc) {
        (Some(r), _) => publish_paced(ep, paths, size, r, pusher, respond_async, &state).await,
        (None, Some(g)) => publish_grpc_stream(g, paths.len(), size, &state).await,
        (None, None) => {
            let pusher = pusher.cloned();
            let p = (publishers, pipeline, respond_async);
            publish_burst(ep, paths, size, p, pusher, &state).await
        }
    }
    let mut out = std::mem::take(&mut *state.borrow_mut());
    out.last_ns = now_ns();
    out
}

pub(super) fn note(st: &mut Published, seq: usize, res: Result<u16>) {
    match res {
        Ok(200 | 202) => st.accepted[seq] = true,
        Ok(code) => {
            st.rejected += 1;
            if st.first_error.is_none() {
                st.first_error = Some(format!("publish answered {code}"));
            }
        }
        Err(e) => {
            st.errors += 1;
            if st.first_error.is_none() {
                st.first_error = Some(format!("publish: {e:#}"));
            }
        }
    }
}

pub(super) async fn publish_paced(
    ep: &Endpoint,
    paths: &[Option<String>],
    size: usize,
    rate: f64,
    pusher: Option<&pusher::App>,
    respond_async: bool,
    state: &RefCell<Published>,
) {
    let mut p = pusher::publisher(pusher, ep).respond_async(respond_async);
    if let Err(e) = p.connect().await {
        note(&mut state.borrow_mut(), 0, Err(e));
        return;
    }
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Late ticks are sent immediately so the total count holds.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    state.borrow_mut().first_ns = now_ns();
    for (seq, path) in paths.iter().enumerate() {
        if state.borrow().errors > 100 {
            break;
        }
        ticker.tick().await;
        let body = payload::encode(seq as u64, now_ns(), size);
        let res = match pusher::request(pusher, path.clone(), body) {
            Ok((path, body)) => p.post(path.as_deref(), &body).await,
            Err(e) => Err(e),
        };
        note(&mut state.borrow_mut(), seq, res);
    }
}

/// All publications (broadcast) on one gRPC `PublishStream`, as fast as
/// HTTP/2 flow control and the gateway's stream window allow; each reply
/// (ok or per-item error) is checked against its seq.
pub(super) async fn publish_grpc_stream(
    ep: &Endpoint,
    n: usize,
    size: usize,
    state: &RefCell<Published>,
) {
    state.borrow_mut().first_ns = now_ns();
    let make = |i: usize| payload::encode(i as u64, now_ns(), size);
    let done = |seq: usize, o: grpc::Outcome| {
        let mut st = state.borrow_mut();
        match o {
            grpc::Outcome::Ok if seq < st.accepted.len() => st.accepted[seq] = true,
            grpc::Outcome::Ok => note(
                &mut st,
                0,
                Err(anyhow::anyhow!("reply for unknown seq {seq}")),
            ),
            grpc::Outcome::Refused(code, msg) => {
                st.rejected += 1;
                if st.first_error.is_none() {
                    st.first_error = Some(format!("PublishStream item {seq}: code {code}: {msg}"));
                }
            }
        }
    };
    if let Err(e) = grpc::publish_stream(ep, n, make, done).await {
        note(&mut state.borrow_mut(), 0, Err(e));
    }
}

/// Publisher i sends seqs i, i+P, i+2P, … pipelined (`(publishers, pipeline,
/// respond_async)`); all connections are opened before the clock starts.
pub(super) async fn publish_burst(
    ep: &Endpoint,
    paths: &[Option<String>],
    size: usize,
    (publishers, pipeline, respond_async): (usize, usize, bool),
    pusher: Option<pusher::App>,
    state: &Rc<RefCell<Published>>,
) {
    let n = publishers.clamp(1, paths.len().max(1));
    let mut pubs = Vec::with_capacity(n);
    for _ in 0..n {
        let mut p = pusher::publisher(pusher.as_ref(), ep).respond_async(respond_async);
        match p.connect().await {
            Ok(()) => pubs.push(p),
            Err(e) => note(&mut state.borrow_mut(), 0, Err(e)),
        }
    }
    let n = pubs.len();
    state.borrow_mut().first_ns = now_ns();
    let tasks: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            let seqs: Vec<usize> = (i..paths.len()).step_by(n).collect();
            let reqs: Vec<Option<String>> = seqs.iter().map(|&s| paths[s].clone()).collect();
            let state = state.clone();
            let pusher = pusher.clone();
            tokio::task::spawn_local(async move {
                let make = |k: usize| {
                    let body = payload::encode(seqs[k] as u64, now_ns(), size);
                    pusher::request(pusher.as_ref(), reqs[k].clone(), body)
                        .expect("the clock is past 1970")
                };
                let done = |k: usize, code: u16| note(&mut state.borrow_mut(), seqs[k], Ok(code));
                if let Err(e) = p.post_pipelined(seqs.len(), pipeline, make, done).await {
                    note(&mut state.borrow_mut(), seqs[0], Err(e));
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}
