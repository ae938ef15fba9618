//! The recovery scenario's worker process (`pushgate-bench recovery-worker`):
//! connections that follow one history channel, disconnect, and come back
//! with `since` = the last offset they received, checking that they get
//! every missed publication exactly once, in order.
//!
//! The coordinator (`scenarios/recovery.rs`) drives the phases over stdin and
//! reads one JSON line per phase on stdout (a [`Tally`] tagged with the
//! phase's name):
//!
//! - start: connect, `subscribe` without `since`; each client keeps the
//!   position of the reply → `ready`
//! - `warm MS`: until every client received the warm-up publications live
//!   (offsets base+1 ..= base+W) → `warm`
//! - `close`: every client drops its socket → `closed`
//! - `recover MS`: every client reconnects (at most `--reconnect-concurrency`
//!   handshakes at a time, 0 = all at once) and subscribes with `since` =
//!   {epoch, last offset received}; until each has the publications up to
//!   base+W+M → `recovered`, with each client's times
//! - `close` again, then `plain MS`: the same reconnect without `since` (the
//!   control: what reconnecting costs without recovering) → `plain`
//! - `exit`
//!
//! One connection's state is a [`Rec`] in a shared vector: the receive path
//! updates it synchronously (single-threaded runtime: `RefCell`s are never
//! held across an await), the worker's main loop scans it to report.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

use crate::client::WorkerConfig;
use crate::conn;
use crate::frame;
use crate::history_frame::{self, Msg, Position};
use crate::proc_stats;
use crate::recv::now_ns;
use crate::target::Endpoint;

#[derive(Debug, Clone)]
pub struct RecoveryWorkerConfig {
    pub ws: Endpoint,
    pub conns: usize,
    pub first_index: usize,
    pub channel: String,
    pub warmup: u64,
    pub missed: u64,
    pub handshake_concurrency: usize,
    /// Handshakes in flight when reconnecting; 0 = all at once.
    pub reconnect_concurrency: usize,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Live,
    Closed,
    Recover,
    ClosedAgain,
    Plain,
    /// Never sent: the worker exits instead (connections read until then).
    Exit,
}

/// What a worker reports after each phase (fields that do not apply to a
/// phase stay 0 / empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Connections this worker holds.
    pub clients: u64,
    /// Connections that failed, in any phase so far (a failed one stays out).
    pub failed: u64,
    /// Sockets still open (after `close`: must be 0).
    pub open: u64,
    /// This phase: handshakes done, `subscribed` replies received, clients
    /// that got everything they expected.
    pub connected: u64,
    pub subscribed: u64,
    pub done: u64,
    /// `ready`: the distinct epochs and the range of offsets in the replies.
    pub epochs: Vec<String>,
    pub base_min: u64,
    pub base_max: u64,
    /// Replies listing the channel as recovered / unrecovered, and replies
    /// whose position was not the last publication.
    pub listed_recovered: u64,
    pub listed_unrecovered: u64,
    pub position_mismatch: u64,
    /// Publications expected this phase, received in offset order without
    /// a gap, received again (offset already seen), missing (gap), carrying
    /// another payload than the one published at that offset, received
    /// before the reply, and beyond the last one published.
    pub expected: u64,
    pub delivered: u64,
    pub dups: u64,
    pub gaps: u64,
    pub seq_mismatch: u64,
    pub early: u64,
    pub extras: u64,
    /// Per client of this phase (recover, plain), CLOCK_REALTIME ns, 0 = never.
    pub connected_ns: Vec<u64>,
    pub subscribed_ns: Vec<u64>,
    pub done_ns: Vec<u64>,
    pub cpu_ns: u64,
    pub errors: Vec<String>,
}

/// One connection: where it is and what it checked in the current phase.
#[derive(Debug, Default)]
struct Rec {
    up: bool,
    failed: bool,
    epoch: String,
    /// Offset in the first reply: warm-up k (0-based) has offset base+1+k.
    base: u64,
    awaiting_reply: bool,
    /// Next offset expected, last one expected this phase, and the reply's
    /// expected position (None: take whatever the first reply says).
    next: u64,
    end: u64,
    want_position: Option<u64>,
    want_recovered: bool,
    connected_ns: u64,
    subscribed_ns: u64,
    done_ns: u64,
    /// The phase ended without success (the reply said unrecovered, or had
    /// no position): nothing more will come, so do not wait for it.
    gave_up: bool,
    listed_recovered: bool,
    listed_unrecovered: bool,
    position_mismatch: bool,
    expected: u64,
    delivered: u64,
    dups: u64,
    gaps: u64,
    seq_mismatch: u64,
    early: u64,
    extras: u64,
}

impl Rec {
    /// Start a phase: the publications after `from` up to `end` are due.
    fn begin(&mut self, from: u64, end: u64, want_position: Option<u64>, want_recovered: bool) {
        *self = Rec {
            up: self.up,
            failed: self.failed,
            epoch: std::mem::take(&mut self.epoch),
            base: self.base,
            awaiting_reply: true,
            next: from + 1,
            end,
            want_position,
            want_recovered,
            expected: end.saturating_sub(from),
            ..Default::default()
        };
    }

    fn done(&self) -> bool {
        self.done_ns > 0
    }

    fn settled(&self) -> bool {
        self.done() || self.gave_up
    }
}

struct Shared {
    cfg: RecoveryWorkerConfig,
    conn_cfg: WorkerConfig,
    recs: RefCell<Vec<Rec>>,
    scratch: RefCell<Box<[u8]>>,
    hint: Cell<usize>,
    errors: RefCell<Vec<String>>,
}

impl Shared {
    fn error(&self, msg: String) {
        let mut e = self.errors.borrow_mut();
        if e.len() < 8 && !e.contains(&msg) {
            e.push(msg);
        }
    }

    /// The payload sequence number published at `offset`: the warm-ups are
    /// seqs 0..W at base+1..=base+W, the missed ones seqs 0..M after them
    /// (each batch comes from one pipelined publisher, so in seq order).
    fn seq_at(&self, base: u64, offset: u64) -> u64 {
        let k = offset - base - 1;
        if k < self.cfg.warmup {
            k
        } else {
            k - self.cfg.warmup
        }
    }

    fn on_msg(&self, i: usize, msg: &[u8], now: u64) {
        let mut hint = self.hint.get();
        let m = history_frame::classify(msg, &mut hint);
        self.hint.set(hint);
        let mut recs = self.recs.borrow_mut();
        let r = &mut recs[i];
        match m {
            Msg::Subscribed(s) => {
                if !r.awaiting_reply {
                    drop(recs);
                    self.error("a second subscribed reply".into());
                    return;
                }
                r.awaiting_reply = false;
                r.subscribed_ns = now;
                let ch = &self.cfg.channel;
                r.listed_recovered = s.recovered.contains(ch);
                r.listed_unrecovered = s.unrecovered.contains(ch);
                match s.positions.get(ch) {
                    None => {
                        r.position_mismatch = true;
                        r.gave_up = true;
                        drop(recs);
                        self.error(format!("no position for {ch} in the reply: is history on?"));
                        return;
                    }
                    Some(p) => match r.want_position {
                        None => {
                            // The first subscribe: this is where the client starts.
                            r.epoch = p.epoch.clone();
                            r.base = p.offset;
                            r.next = p.offset + 1;
                            r.end = p.offset + self.cfg.warmup;
                            r.expected = self.cfg.warmup;
                        }
                        Some(want) => {
                            r.position_mismatch = p.offset != want || p.epoch != r.epoch;
                        }
                    },
                }
                if r.want_recovered && !r.listed_recovered {
                    r.gave_up = true;
                } else if r.next > r.end {
                    r.done_ns = now;
                }
            }
            Msg::Pub { offset, seq } => {
                if r.awaiting_reply {
                    r.early += 1;
                }
                let Some(o) = offset else {
                    drop(recs);
                    self.error("a publication without an offset: is history on?".into());
                    return;
                };
                if o > r.end {
                    r.extras += 1;
                } else if o < r.next {
                    r.dups += 1;
                } else {
                    r.gaps += o - r.next;
                    r.delivered += 1;
                    if o <= r.base || seq != Some(self.seq_at(r.base, o)) {
                        r.seq_mismatch += 1;
                    }
                    r.next = o + 1;
                    if o == r.end && (!r.want_recovered || r.listed_recovered) {
                        r.done_ns = now;
                    }
                }
            }
            Msg::Problem(p) => {
                drop(recs);
                self.error(p);
            }
            Msg::Other => {}
        }
    }
}

/// One open connection: the stream, the bytes of a frame cut by the last
/// read, and control frames to send back.
struct Link {
    stream: TcpStream,
    pending: Vec<u8>,
    out: Vec<u8>,
    mask_seed: u64,
}

impl Link {
    /// Connect and do the WebSocket handshake (the bench's usual client
    /// code: spread source addresses, fixed key), then send the subscribe.
    async fn open(sh: &Shared, i: usize, since: Option<&Position>, id: u64) -> Result<Self> {
        let idx = sh.cfg.first_index + i;
        let (stream, pending) = conn::open(idx, &sh.conn_cfg).await?;
        sh.recs.borrow_mut()[i].connected_ns = now_ns();
        let mut l = Link {
            stream,
            pending,
            out: Vec::new(),
            mask_seed: idx as u64 | 1,
        };
        let text = history_frame::subscribe_json(&sh.cfg.channel, since, id);
        let key = frame::mask_key(&mut l.mask_seed);
        frame::encode_client_frame(frame::OP_TEXT, text.as_bytes(), key, &mut l.out);
        l.flush().await?;
        Ok(l)
    }

    async fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Handle what is buffered and what arrives until `rx` reaches `until`.
    async fn follow(
        &mut self,
        sh: &Shared,
        i: usize,
        rx: &mut watch::Receiver<Phase>,
        until: Phase,
    ) -> Result<()> {
        let mut data = std::mem::take(&mut self.pending);
        let used = self.process(sh, i, &mut data)?;
        self.pending = data.split_off(used);
        loop {
            tokio::select! {
                biased;
                _ = rx.wait_for(|p| *p >= until) => return Ok(()),
                r = self.stream.readable() => {
                    r?;
                    self.read_once(sh, i)?;
                    self.flush().await?;
                }
            }
        }
    }

    /// One non-blocking read into the worker's shared buffer; every
    /// complete frame is handled in place, a cut one kept for later.
    fn read_once(&mut self, sh: &Shared, i: usize) -> Result<()> {
        let mut buf = sh.scratch.borrow_mut();
        let pre = self.pending.len();
        if pre > buf.len() / 2 {
            bail!("a frame of more than {} bytes", buf.len() / 2);
        }
        buf[..pre].copy_from_slice(&self.pending);
        let n = match self.stream.try_read(&mut buf[pre..]) {
            Ok(0) => bail!("server closed the TCP connection"),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let end = pre + n;
        let used = self.process(sh, i, &mut buf[..end])?;
        self.pending.clear();
        self.pending.extend_from_slice(&buf[used..end]);
        if self.pending.capacity() > 64 << 10 && self.pending.len() < 4096 {
            self.pending.shrink_to(4096);
        }
        Ok(())
    }

    /// Handle the complete frames at the start of `buf`; returns the bytes
    /// used. A CLOSE from the server fails the connection: nothing in this
    /// scenario should make the gateway close a client.
    fn process(&mut self, sh: &Shared, i: usize, buf: &mut [u8]) -> Result<usize> {
        let now = now_ns();
        let mut pos = 0;
        while let Some(h) = frame::parse_header(&buf[pos..])? {
            let end = pos + h.total_len();
            if end > buf.len() {
                break;
            }
            let body = &mut buf[pos + h.header_len..end];
            pos = end;
            if let Some(key) = h.mask {
                frame::apply_mask(body, key);
            }
            match h.opcode {
                frame::OP_TEXT if h.fin => sh.on_msg(i, body, now),
                frame::OP_PING => {
                    let key = frame::mask_key(&mut self.mask_seed);
                    frame::encode_client_frame(frame::OP_PONG, body, key, &mut self.out);
                }
                frame::OP_CLOSE => {
                    let code = body.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    bail!("server closed the connection (code {code:?})");
                }
                frame::OP_PONG => {}
                op => bail!("unexpected frame: opcode {op}, fin {}", h.fin),
            }
        }
        Ok(pos)
    }
}

/// Whole life of connection `i`.
async fn conn_task(
    i: usize,
    sh: Rc<Shared>,
    mut rx: watch::Receiver<Phase>,
    connect: Rc<Semaphore>,
    reconnect: Rc<Semaphore>,
) {
    if let Err(e) = phases(i, &sh, &mut rx, &connect, &reconnect).await {
        let mut recs = sh.recs.borrow_mut();
        recs[i].failed = true;
        recs[i].up = false;
        drop(recs);
        sh.error(format!("{e:#}"));
    }
}

async fn phases(
    i: usize,
    sh: &Shared,
    rx: &mut watch::Receiver<Phase>,
    connect: &Semaphore,
    reconnect: &Semaphore,
) -> Result<()> {
    let timeout = sh.cfg.connect_timeout;
    // Live: subscribe without since, receive the warm-ups.
    sh.recs.borrow_mut()[i].begin(0, 0, None, false);
    let mut link = {
        let _permit = connect.acquire().await?;
        tokio::time::timeout(timeout, Link::open(sh, i, None, 1))
            .await
            .context("connect timed out")??
    };
    sh.recs.borrow_mut()[i].up = true;
    link.follow(sh, i, rx, Phase::Closed).await?;
    drop(link);
    sh.recs.borrow_mut()[i].up = false;

    // Recover: since = the last offset received (the worker's main loop
    // started the phase in `prepare`).
    rx.wait_for(|p| *p >= Phase::Recover).await?;
    let since = {
        let recs = sh.recs.borrow();
        Position {
            epoch: recs[i].epoch.clone(),
            offset: recs[i].next - 1,
        }
    };
    let mut link = {
        let _permit = reconnect.acquire().await?;
        tokio::time::timeout(timeout, Link::open(sh, i, Some(&since), 2))
            .await
            .context("reconnect timed out")??
    };
    sh.recs.borrow_mut()[i].up = true;
    link.follow(sh, i, rx, Phase::ClosedAgain).await?;
    drop(link);
    sh.recs.borrow_mut()[i].up = false;

    // Plain: the same reconnect without since; only the reply is due.
    rx.wait_for(|p| *p >= Phase::Plain).await?;
    let mut link = {
        let _permit = reconnect.acquire().await?;
        tokio::time::timeout(timeout, Link::open(sh, i, None, 3))
            .await
            .context("reconnect timed out")??
    };
    sh.recs.borrow_mut()[i].up = true;
    // Until the worker exits.
    link.follow(sh, i, rx, Phase::Exit).await
}

pub fn run_worker(cfg: RecoveryWorkerConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, worker_main(cfg))
}

async fn worker_main(cfg: RecoveryWorkerConfig) -> Result<()> {
    let conn_cfg = WorkerConfig {
        ws: cfg.ws.clone(),
        conns: cfg.conns,
        first_index: cfg.first_index,
        max_seq: 0,
        size: 0,
        no_read: false,
        deflate: false,
        pusher: false,
        channels: None,
        handshake_concurrency: cfg.handshake_concurrency,
        connect_timeout: cfg.connect_timeout,
    };
    let n = cfg.conns;
    let sh = Rc::new(Shared {
        recs: RefCell::new((0..n).map(|_| Rec::default()).collect()),
        scratch: RefCell::new(vec![0u8; 256 << 10].into_boxed_slice()),
        hint: Cell::new(0),
        errors: RefCell::new(Vec::new()),
        conn_cfg,
        cfg,
    });
    let (tx, rx) = watch::channel(Phase::Live);
    let connect = Rc::new(Semaphore::new(sh.cfg.handshake_concurrency.max(1)));
    let rc = match sh.cfg.reconnect_concurrency {
        0 => n.max(1),
        k => k,
    };
    let reconnect = Rc::new(Semaphore::new(rc));
    for i in 0..n {
        tokio::task::spawn_local(conn_task(
            i,
            sh.clone(),
            rx.clone(),
            connect.clone(),
            reconnect.clone(),
        ));
    }
    let rounds = n / sh.cfg.handshake_concurrency.max(1) + 2;
    let connect_ms = sh.cfg.connect_timeout.as_millis() as u64 * rounds as u64;
    wait_all(&sh, connect_ms, |r| r.subscribed_ns > 0).await;
    emit("ready", &tally(&sh, false)).await?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(3600), lines.next_line())
            .await
            .context("no command within an hour")??
            .unwrap_or_else(|| "exit".into());
        let mut it = line.split_whitespace();
        let cmd = it.next().unwrap_or("exit");
        let ms: u64 = it.next().map_or(Ok(60_000), str::parse)?;
        match cmd {
            "warm" => {
                wait_all(&sh, ms, Rec::settled).await;
                emit("warm", &tally(&sh, false)).await?;
            }
            "close" => {
                let next = if *tx.borrow() < Phase::Recover {
                    Phase::Closed
                } else {
                    Phase::ClosedAgain
                };
                tx.send_replace(next);
                wait_all(&sh, 10_000, |r| !r.up).await;
                emit("closed", &tally(&sh, false)).await?;
            }
            "recover" => {
                prepare(&sh, Phase::Recover);
                tx.send_replace(Phase::Recover);
                wait_all(&sh, ms, Rec::settled).await;
                emit("recovered", &tally(&sh, true)).await?;
            }
            "plain" => {
                prepare(&sh, Phase::Plain);
                tx.send_replace(Phase::Plain);
                wait_all(&sh, ms, |r| r.subscribed_ns > 0).await;
                emit("plain", &tally(&sh, true)).await?;
            }
            "exit" => std::process::exit(0),
            _ => bail!("unknown command {line:?}"),
        }
    }
}

/// Start a reconnect phase on every connection before the tasks are told,
/// so that no check can see the last phase's state: recover = the
/// publications after the last one received, up to the last published
/// (base + warm-ups + missed); plain = only the reply.
fn prepare(sh: &Shared, phase: Phase) {
    let (w, m) = (sh.cfg.warmup, sh.cfg.missed);
    for r in sh.recs.borrow_mut().iter_mut().filter(|r| !r.failed) {
        let end = r.base + w + m;
        match phase {
            Phase::Recover => r.begin(r.next - 1, end, Some(end), true),
            _ => r.begin(end, end, Some(end), false),
        }
    }
}

/// Until `ok` holds for every connection that has not failed, or `ms` pass.
async fn wait_all(sh: &Shared, ms: u64, ok: impl Fn(&Rec) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        if sh.recs.borrow().iter().all(|r| r.failed || ok(r)) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            sh.error(format!("phase not complete within {ms} ms"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn tally(sh: &Shared, times: bool) -> Tally {
    let recs = sh.recs.borrow();
    let mut t = Tally {
        clients: recs.len() as u64,
        base_min: u64::MAX,
        cpu_ns: proc_stats::self_cpu_ns(),
        errors: sh.errors.borrow().clone(),
        ..Default::default()
    };
    for r in recs.iter() {
        t.failed += u64::from(r.failed);
        t.open += u64::from(r.up);
        if r.failed {
            continue;
        }
        t.connected += u64::from(r.connected_ns > 0);
        t.subscribed += u64::from(r.subscribed_ns > 0);
        t.done += u64::from(r.done());
        if r.subscribed_ns > 0 && !t.epochs.contains(&r.epoch) {
            t.epochs.push(r.epoch.clone());
        }
        t.base_min = t.base_min.min(r.base);
        t.base_max = t.base_max.max(r.base);
        t.listed_recovered += u64::from(r.listed_recovered);
        t.listed_unrecovered += u64::from(r.listed_unrecovered);
        t.position_mismatch += u64::from(r.position_mismatch);
        t.expected += r.expected;
        t.delivered += r.delivered;
        t.dups += r.dups;
        t.gaps += r.gaps;
        t.seq_mismatch += r.seq_mismatch;
        t.early += r.early;
        t.extras += r.extras;
    }
    // A failed client still owed its publications: count them as expected.
    let owed: u64 = recs.iter().filter(|r| r.failed).map(|r| r.expected).sum();
    t.expected += owed;
    if t.base_min == u64::MAX {
        t.base_min = 0;
    }
    if times {
        t.connected_ns = recs.iter().map(|r| r.connected_ns).collect();
        t.subscribed_ns = recs.iter().map(|r| r.subscribed_ns).collect();
        t.done_ns = recs.iter().map(|r| r.done_ns).collect();
    }
    t
}

async fn emit(ty: &str, t: &Tally) -> Result<()> {
    let json = serde_json::to_string(t)?;
    let line = format!("{{\"type\":\"{ty}\",{}\n", &json[1..]);
    let mut out = tokio::io::stdout();
    out.write_all(line.as_bytes()).await?;
    out.flush().await?;
    Ok(())
}
