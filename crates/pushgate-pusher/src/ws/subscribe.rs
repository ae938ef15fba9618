//! `pusher:subscribe` and `pusher:unsubscribe`: the channel's signature for private,
//! encrypted and presence channels, then the hub subscription (a presence channel
//! joins the hub's presence as the member of its `channel_data`), then
//! `pusher_internal:subscription_succeeded` once the node follows the channel on the
//! cluster bus (with the members, read cluster-wide, for a presence channel).

use std::sync::Arc;

use pushgate_hub::{ConnHandle, Key};
use serde_json::Value;

use super::session::Sub;
use super::PusherSurface;
use crate::auth;
use crate::channel::{self, ChannelKind};
use crate::wire::{self, Member};

/// A presence member from `channel_data`: `user_id` (a string or a number), and
/// `user_info` as JSON text.
fn member_of(channel_data: &str) -> Option<Member> {
    let v: Value = serde_json::from_str(channel_data).ok()?;
    let user_id = match v.get("user_id")? {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let user_info = v
        .get("user_info")
        .filter(|i| !i.is_null())
        .map(Value::to_string);
    Some(Member { user_id, user_info })
}

impl PusherSurface {
    pub(super) fn subscribe(
        &self,
        handle: &ConnHandle,
        channel: String,
        auth: Option<String>,
        channel_data: Option<String>,
    ) {
        let conn = handle.id();
        let Some((app, socket_id, signed_in)) = self.sessions.with(conn, |s| {
            (s.app.clone(), s.socket_id.clone(), s.user.clone())
        }) else {
            return;
        };
        let error = |kind: &str, message: &str, status: u16| {
            handle.send(wire::subscription_error(&channel, kind, message, status));
        };
        let pg = match channel::to_pushgate(&app.id, &channel) {
            Ok(pg) => pg,
            Err(e) => return error("InvalidChannel", &e.to_string(), 400),
        };
        let kind = ChannelKind::of(&channel);
        let mut member = None;
        if kind == ChannelKind::ServerToUser {
            let own = channel.strip_prefix(channel::SERVER_TO_USER) == signed_in.as_deref();
            if !own {
                return error(
                    "AuthError",
                    "a user's channel is for its signed-in connections",
                    403,
                );
            }
        } else if kind.needs_auth() {
            let data = channel_data
                .as_deref()
                .filter(|_| kind == ChannelKind::Presence);
            let signed = auth
                .as_deref()
                .is_some_and(|a| auth::check_channel(&app, &socket_id, &channel, data, a));
            if !signed {
                crate::metrics::auth_refused();
                let why = match auth {
                    None => format!("{channel} needs an auth signature"),
                    Some(_) => format!("invalid signature for {channel} and socket {socket_id}"),
                };
                return error("AuthError", &why, 401);
            }
            if kind == ChannelKind::Presence {
                match data.and_then(member_of) {
                    Some(m) => member = Some(m),
                    None => {
                        return error(
                            "AuthError",
                            "presence channel_data must be JSON with a user_id",
                            400,
                        )
                    }
                }
            }
        }
        let info: Option<Arc<str>> = member
            .as_ref()
            .and_then(|m| m.user_info.as_deref().map(Arc::from));
        let as_member = member.as_ref().map(|m| (m.user_id.as_str(), info.as_ref()));
        if let Err(e) = handle.subscribe_member(std::slice::from_ref(&pg), as_member) {
            return error("LimitReached", &e.to_string(), 429);
        }
        self.sessions.with(conn, |s| {
            if s.sub(&channel).is_none() {
                s.subs.push(Sub {
                    name: channel.clone(),
                    pg: pg.clone(),
                    kind,
                    user_id: member.as_ref().map(|m| m.user_id.clone()),
                });
            }
        });
        let hub = self.pusher.hub();
        if let Some(events) = self.pusher.events() {
            if hub.channel_subscribers(&pg) == 1 {
                events.channel_occupied(&app, &channel);
            }
        }
        match member {
            None => handle.reply_when_subscribed(
                std::slice::from_ref(&pg),
                wire::subscription_succeeded(&channel),
            ),
            Some(me) => {
                // The members are read cluster-wide (Redis with a cluster broker), off
                // the shard's thread; this connection's own join may not have
                // reached the store yet, so it is added if missing.
                let pusher = self.pusher.clone();
                tokio::spawn(async move {
                    let mut members: Vec<Member> = match pusher.broker().presence(&pg).await {
                        Ok(clients) => clients
                            .into_iter()
                            .filter_map(|c| {
                                Some(Member {
                                    user_id: c.user?,
                                    user_info: c.info,
                                })
                            })
                            .collect(),
                        Err(e) => {
                            let frame = wire::subscription_error(
                                &channel,
                                "PresenceError",
                                &e.to_string(),
                                503,
                            );
                            return pusher.hub().send_to(conn, frame);
                        }
                    };
                    if !members.iter().any(|m| m.user_id == me.user_id) {
                        members.push(me);
                    }
                    let frame = wire::presence_succeeded(&channel, &members);
                    let hub = pusher.hub();
                    let keys = [Key::Channel(pg.as_str().into())];
                    if let Some(frame) = hub.interest().hold(keys, conn, frame) {
                        hub.send_to(conn, frame);
                    }
                });
            }
        }
    }

    pub(super) fn unsubscribe(&self, handle: &ConnHandle, channel: &str) {
        let conn = handle.id();
        let removed = self.sessions.with(conn, |s| {
            let i = s.subs.iter().position(|x| x.name == channel)?;
            Some((s.app.clone(), s.subs.swap_remove(i)))
        });
        let Some(Some((app, sub))) = removed else {
            return;
        };
        handle.unsubscribe(std::slice::from_ref(&sub.pg));
        if let Some(events) = self.pusher.events() {
            if self.pusher.hub().channel_subscribers(&sub.pg) == 0 {
                events.channel_vacated(&app, channel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_come_from_channel_data() {
        let m = member_of(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#).unwrap();
        assert_eq!(m.user_id, "10");
        assert_eq!(m.user_info.as_deref(), Some(r#"{"name":"Mr. Channels"}"#));
        let m = member_of(r#"{"user_id":"a"}"#).unwrap();
        assert_eq!((m.user_id.as_str(), m.user_info), ("a", None));
        assert_eq!(member_of(r#"{"user_info":{}}"#), None);
        assert_eq!(member_of(r#"{"user_id":""}"#), None);
        assert_eq!(member_of("nope"), None);
    }
}
