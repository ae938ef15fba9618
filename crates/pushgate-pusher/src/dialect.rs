//! How publications and presence events look to Pusher connections: the hub's
//! [`Dialect`], installed by [`Pusher::install`](crate::Pusher::install).
//!
//! A publication's Pusher frame is built from its pushgate.v1 frame, once per channel
//! per publication (by the first Pusher recipient; `pushgate_hub::dialect`): its text
//! payload is read back (an envelope gives the event, data and user id; any other
//! text is the data of event `pushgate:publication`) and the channel named by its
//! Pusher name. Binary payloads have no Pusher form: Pusher connections skip them.

use std::sync::Weak;

use bytes::Bytes;
use pushgate_hub::Dialect;
use pushgate_protocol::{decode_publication, Payload, PresenceClient, PresenceEvent};

use crate::channel;
use crate::service::Pusher;
use crate::wire::{self, Member};

pub(crate) struct PusherDialect {
    /// Weak: the hub holds the dialect, and the surface holds the hub.
    pub(crate) pusher: Weak<Pusher>,
}

impl Dialect for PusherDialect {
    fn publication(&self, ch: Option<&str>, frame: &Bytes) -> Option<Bytes> {
        // Once per channel of a publication with Pusher recipients, not per recipient.
        let Payload::Text(text) = decode_publication(frame)? else {
            return None;
        };
        // A pushgate.v1 channel outside the mapping (an operator's subscribe) keeps
        // its name.
        let name = ch.map(|c| channel::from_pushgate(c).map_or_else(|| c.to_owned(), |(_, n)| n));
        Some(wire::publication(name.as_deref(), &text))
    }

    fn presence_event(
        &self,
        kind: PresenceEvent,
        ch: &str,
        client: &PresenceClient,
        user_edge: bool,
    ) -> Option<Bytes> {
        // Pusher's members are users: only a user's first join and last leave count.
        if !user_edge {
            return None;
        }
        let (_, name) = channel::from_pushgate(ch)?;
        let m = Member {
            user_id: client.user.clone()?,
            user_info: client.info.clone(),
        };
        Some(wire::member_event(kind == PresenceEvent::Join, &name, &m))
    }

    fn user_edge(&self, channel: &str, user: &str, joined: bool) {
        // Once per edge: node-wide with one node, once for the cluster with Redis.
        let Some(pusher) = self.pusher.upgrade() else {
            return;
        };
        let Some(events) = pusher.events() else {
            return;
        };
        let Some((app_id, name)) = channel::from_pushgate(channel) else {
            return;
        };
        if let Some(app) = pusher.apps().by_id(&app_id) {
            if joined {
                events.member_added(app, &name, user);
            } else {
                events.member_removed(app, &name, user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_protocol::encode_publication;

    fn body(frame: &Bytes) -> serde_json::Value {
        serde_json::from_slice(&frame[2..]).unwrap()
    }

    #[test]
    fn publications_get_their_pusher_channel_and_event() {
        let d = PusherDialect {
            pusher: Weak::new(),
        };
        let env = wire::Envelope {
            event: "e".into(),
            data: "d".into(),
            user_id: None,
        }
        .to_payload();
        let f = encode_publication(Some("pusher/1/private-a"), &Payload::Text(env));
        let v = body(&d.publication(Some("pusher/1/private-a"), &f).unwrap());
        assert_eq!(
            (
                v["event"].as_str(),
                v["channel"].as_str(),
                v["data"].as_str()
            ),
            (Some("e"), Some("private-a"), Some("d"))
        );
        let f = encode_publication(None, &Payload::Text("hi".into()));
        let v = body(&d.publication(None, &f).unwrap());
        assert_eq!(v["event"], wire::PUSHGATE_EVENT);
        assert!(v.get("channel").is_none());
        let bin = encode_publication(None, &Payload::Binary(Bytes::from_static(b"x")));
        assert_eq!(d.publication(None, &bin), None);
    }

    #[test]
    fn member_events_only_at_a_users_edges() {
        let d = PusherDialect {
            pusher: Weak::new(),
        };
        let c = PresenceClient {
            conn: "n1-1".into(),
            user: Some("u".into()),
            info: None,
        };
        assert!(d
            .presence_event(PresenceEvent::Join, "pusher/1/presence-a", &c, false)
            .is_none());
        let v = body(
            &d.presence_event(PresenceEvent::Join, "pusher/1/presence-a", &c, true)
                .unwrap(),
        );
        assert_eq!(v["event"], "pusher_internal:member_added");
        assert_eq!(v["channel"], "presence-a");
    }
}
