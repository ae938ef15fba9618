//! What the Pusher surface remembers per connection: its app, socket id, channels
//! (with the member it is on presence channels), signed-in user and client-event
//! meter. Kept in a striped table beside the hub, keyed by connection id, so that the
//! connection's entry in its shard's poller (whose size every idle connection pays)
//! does not grow.

use std::sync::Arc;

use ahash::AHashMap;
use parking_lot::Mutex;
use pushgate_protocol::ConnId;

use crate::app::PusherApp;
use crate::channel::ChannelKind;

const STRIPES: usize = 16;

/// One subscribed channel.
#[derive(Debug, Clone)]
pub(crate) struct Sub {
    /// The Pusher name.
    pub name: String,
    /// The pushgate channel it maps to.
    pub pg: String,
    pub kind: ChannelKind,
    /// On a presence channel: the member's `user_id`.
    pub user_id: Option<String>,
}

/// One connection's state.
pub(crate) struct Session {
    /// Index of its app in the surface's list (for the per-app connection count).
    pub app_index: usize,
    pub app: Arc<PusherApp>,
    pub socket_id: String,
    pub subs: Vec<Sub>,
    /// The signed-in user id (`pusher:signin`).
    pub user: Option<String>,
    /// Client events in the current second: (second, count).
    pub meter: (u64, u32),
}

impl Session {
    pub(crate) fn sub(&self, name: &str) -> Option<&Sub> {
        self.subs.iter().find(|s| s.name == name)
    }
}

/// Every open Pusher connection of the node.
pub(crate) struct Sessions {
    stripes: Box<[Mutex<AHashMap<ConnId, Session>>]>,
}

impl Sessions {
    pub(crate) fn new() -> Sessions {
        Sessions {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
        }
    }

    fn stripe(&self, conn: ConnId) -> &Mutex<AHashMap<ConnId, Session>> {
        &self.stripes[(conn.0 as usize) % STRIPES]
    }

    pub(crate) fn insert(&self, conn: ConnId, s: Session) {
        self.stripe(conn).lock().insert(conn, s);
    }

    pub(crate) fn remove(&self, conn: ConnId) -> Option<Session> {
        self.stripe(conn).lock().remove(&conn)
    }

    /// Runs `f` on the connection's session (`None` if it is gone). `f` must not take
    /// another lock of this table.
    pub(crate) fn with<R>(&self, conn: ConnId, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
        self.stripe(conn).lock().get_mut(&conn).map(f)
    }
}
