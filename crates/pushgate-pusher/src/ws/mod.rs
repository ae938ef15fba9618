//! The Pusher protocol's WebSocket side: `/app/{key}` on the WebSocket listener, as a
//! [`Surface`] of the edge (same accept loop, tasks, reader, writer, limits,
//! heartbeats and drain as pushgate.v1; docs/pusher.md).
//!
//! - this file: opening (app key, protocol version, the app's connection limit),
//!   closing (Pusher's close codes) and dispatching a client's messages;
//! - `session`: the per-connection state;
//! - `subscribe`: `pusher:subscribe` / `pusher:unsubscribe`, channel auth, presence;
//! - `client`: client events and `pusher:signin`.

mod client;
mod session;
mod subscribe;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pushgate_edge::{Surface, UpgradeRequest};
use pushgate_hub::{CloseReason, ConnHandle};
use pushgate_protocol::frame::encode_close;
use pushgate_protocol::{CloseCode, ConnId};

use crate::app::PusherApp;
use crate::channel::{self, ChannelKind};
use crate::service::Pusher;
use crate::wire::{self, ClientMessage};

use session::{Session, Sessions};

/// The path prefix of Pusher connections.
pub const PATH: &str = "/app/";
/// Protocol versions accepted (pusher-js speaks 7).
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;
/// Pusher's own activity timeout, in seconds: the most a client waits before pinging.
const ACTIVITY_TIMEOUT: u64 = 120;

/// Pusher's close and error codes used here (pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol).
pub mod codes {
    pub const UNKNOWN_APP: u16 = 4001;
    pub const PATH_NOT_FOUND: u16 = 4005;
    pub const BAD_VERSION: u16 = 4006;
    pub const UNSUPPORTED_VERSION: u16 = 4007;
    pub const UNAUTHORIZED: u16 = 4009;
    pub const OVER_CAPACITY: u16 = 4100;
    pub const RECONNECT: u16 = 4200;
    pub const PONG_NOT_RECEIVED: u16 = 4201;
    pub const CLIENT_EVENT_RATE: u16 = 4301;
}

/// The Pusher surface of the WebSocket listener.
pub struct PusherSurface {
    pusher: Arc<Pusher>,
    apps: Vec<Arc<PusherApp>>,
    /// Open connections per app (same order as `apps`), for `max_connections`.
    open: Vec<AtomicUsize>,
    sessions: Sessions,
    activity_timeout: u64,
    pong: Bytes,
}

impl PusherSurface {
    pub fn new(pusher: Arc<Pusher>) -> PusherSurface {
        let apps: Vec<Arc<PusherApp>> = pusher.apps().iter().cloned().map(Arc::new).collect();
        // A client silent for the hub's heartbeat timeout is reaped: it must ping before.
        let timeout = pusher.hub().config().heartbeat_timeout.as_secs() / 2;
        PusherSurface {
            open: apps.iter().map(|_| AtomicUsize::new(0)).collect(),
            apps,
            sessions: Sessions::new(),
            activity_timeout: timeout.clamp(1, ACTIVITY_TIMEOUT),
            pong: wire::event("pusher:pong", None, "{}", None),
            pusher,
        }
    }

    pub(crate) fn pusher(&self) -> &Arc<Pusher> {
        &self.pusher
    }
}

/// `pusher:error` with `code`, then a close frame with the same code.
fn refusal(code: u16, message: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(&wire::error(Some(code), message));
    out.extend_from_slice(&encode_close(CloseCode(code), message));
    out.freeze()
}

impl Surface for PusherSurface {
    fn serves(&self, path: &str) -> bool {
        path.starts_with(PATH)
    }

    fn open(&self, req: &UpgradeRequest, conn: ConnId) -> Result<Bytes, Bytes> {
        let key = &req.path[PATH.len()..];
        if key.is_empty() || key.contains('/') {
            return Err(refusal(
                codes::PATH_NOT_FOUND,
                "path not found: use /app/{key}",
            ));
        }
        let Some(index) = self.apps.iter().position(|a| a.key == key) else {
            let shown: String = key.chars().take(64).collect();
            return Err(refusal(
                codes::UNKNOWN_APP,
                &format!("App key {shown} not in this cluster"),
            ));
        };
        match req.query_param("protocol").map(str::parse::<u32>) {
            None | Some(Err(_)) => {
                return Err(refusal(codes::BAD_VERSION, "Invalid version string format"))
            }
            Some(Ok(v)) if !PROTOCOLS.contains(&v) => {
                return Err(refusal(
                    codes::UNSUPPORTED_VERSION,
                    "Unsupported protocol version",
                ))
            }
            Some(Ok(_)) => {}
        }
        let app = &self.apps[index];
        let max = app.max_connections;
        let admitted = self.open[index].fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (max == 0 || n < max).then_some(n + 1)
        });
        if admitted.is_err() {
            crate::metrics::refused(codes::OVER_CAPACITY);
            return Err(refusal(codes::OVER_CAPACITY, "Over capacity"));
        }
        let socket_id = self.pusher.socket_id(conn).to_string();
        let first = wire::connection_established(&socket_id, self.activity_timeout);
        self.sessions.insert(
            conn,
            Session {
                app_index: index,
                app: app.clone(),
                socket_id,
                subs: Vec::new(),
                user: None,
                meter: (0, 0),
            },
        );
        Ok(first)
    }

    fn over_capacity(&self) -> Bytes {
        crate::metrics::refused(codes::OVER_CAPACITY);
        refusal(codes::OVER_CAPACITY, "Over capacity")
    }

    fn on_text(&self, text: &str, handle: &ConnHandle) {
        match wire::parse(text) {
            Err(e) => handle.send(wire::error(None, &e.to_string())),
            Ok(ClientMessage::Ping) => handle.send(self.pong.clone()),
            Ok(ClientMessage::Pong | ClientMessage::Unknown(_)) => {}
            Ok(ClientMessage::Subscribe {
                channel,
                auth,
                channel_data,
            }) => self.subscribe(handle, channel, auth, channel_data),
            Ok(ClientMessage::Unsubscribe { channel }) => self.unsubscribe(handle, &channel),
            Ok(ClientMessage::Signin { auth, user_data }) => self.signin(handle, &auth, &user_data),
            Ok(ClientMessage::ClientEvent {
                event,
                channel,
                data,
            }) => self.client_event(handle, event, channel, data),
        }
    }

    fn closing(&self, reason: CloseReason, note: Option<(u16, &str)>) -> Vec<Bytes> {
        // pusher-js reconnects after 4100-4299 (at once from 4200) and after 1xxx
        // codes; it gives up after 4000-4099 and 4300+: only an app's refusal
        // (terminate_connections, 4009) uses those.
        let (code, text) = match (reason, note) {
            (CloseReason::Disconnected, Some((code, text))) => (code, text),
            (CloseReason::Disconnected, None) => {
                (codes::RECONNECT, "disconnected by the server; reconnect")
            }
            (CloseReason::Shutdown, _) => (codes::RECONNECT, "server is going away; reconnect"),
            (CloseReason::HeartbeatTimeout, _) => {
                (codes::PONG_NOT_RECEIVED, "Pong reply not received")
            }
            (CloseReason::SlowConsumer, _) => {
                (codes::OVER_CAPACITY, "too slow to read what was sent")
            }
            (CloseReason::TokenExpired, _) => (codes::UNAUTHORIZED, "unauthorized"),
            (CloseReason::InboundFlood, _) => (codes::OVER_CAPACITY, "too many messages"),
            (r, _) => return vec![encode_close(r.code(), r.label())],
        };
        vec![
            wire::error(Some(code), text),
            encode_close(CloseCode(code), text),
        ]
    }

    fn guarded(&self, pg: &str) -> bool {
        channel::from_pushgate(pg)
            .is_some_and(|(_, name)| ChannelKind::of(&name) != ChannelKind::Public)
    }

    fn closed(&self, conn: ConnId) {
        let Some(s) = self.sessions.remove(conn) else {
            return;
        };
        self.open[s.app_index].fetch_sub(1, Ordering::AcqRel);
        if let Some(events) = self.pusher.events() {
            // The connection still counts until its handle drops, just after this.
            for sub in &s.subs {
                if self.pusher.hub().channel_subscribers(&sub.pg) <= 1 {
                    events.channel_vacated(&s.app, &sub.name);
                }
            }
        }
    }
}
