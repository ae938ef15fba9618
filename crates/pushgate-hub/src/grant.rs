//! What a token lets a connection do: the channels it may subscribe to, and until when.
//!
//! Only token-authenticated connections have a [`Grant`]. Grants live in a side table
//! of the shard keyed by slot (`ShardState::grants`), not in the connection entry, so
//! anonymous connections pay nothing for them: the entry stays at 112 bytes and the
//! table is empty when tokens are not in use. A lookup there costs a hash of a slot
//! number, on subscribe and refresh only, never per delivery.

use std::sync::Arc;

use ahash::AHashSet;
use pushgate_protocol::{validate_channel, ChannelError, MAX_CHANNEL_LEN};
use thiserror::Error;

/// Channels a token allows: exact names and `prefix*` patterns (`*` alone: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    exact: AHashSet<Box<str>>,
    /// Prefixes of `prefix*` patterns, without the `*`; an empty prefix allows any name.
    prefixes: Vec<Box<str>>,
}

/// A channel pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("channel pattern {pattern:?}: {error}")]
pub struct PatternError {
    pub pattern: String,
    pub error: ChannelError,
}

impl Permissions {
    /// Parses patterns: a channel name, or a name prefix followed by one `*`.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Permissions, PatternError> {
        let mut p = Permissions::default();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let bad = |error| PatternError {
                pattern: pattern.to_owned(),
                error,
            };
            match pattern.strip_suffix('*') {
                Some("") => p.prefixes.push("".into()),
                Some(prefix) => {
                    if prefix.len() >= MAX_CHANNEL_LEN {
                        return Err(bad(ChannelError::TooLong));
                    }
                    validate_channel(prefix).map_err(bad)?;
                    p.prefixes.push(prefix.into());
                }
                None => {
                    validate_channel(pattern).map_err(bad)?;
                    p.exact.insert(pattern.into());
                }
            }
        }
        Ok(p)
    }

    /// Whether `channel` (a valid name) may be subscribed to.
    pub fn allows(&self, channel: &str) -> bool {
        self.exact.contains(channel) || self.prefixes.iter().any(|p| channel.starts_with(&**p))
    }
}

/// What a verified token grants one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub permissions: Arc<Permissions>,
    /// When the token expires, in Unix seconds.
    pub expires: u64,
    /// The token's `info` claim as JSON text (shown in presence), if it had one.
    pub info: Option<Arc<str>>,
}

/// A grant in the shard's side table.
#[derive(Debug)]
pub(crate) struct GrantEntry {
    pub(crate) grant: Grant,
    /// The client was told its token expired (`token_expired`); the grace period runs.
    pub(crate) warned: bool,
    /// A refresh is being verified (off the shard's thread); another one waits for it.
    refreshing: bool,
    /// Refreshes begun in the current minute of the shard's clock: (minute, count).
    refreshes: (u16, u8),
}

impl GrantEntry {
    pub(crate) fn new(grant: Grant) -> Self {
        GrantEntry {
            grant,
            warned: false,
            refreshing: false,
            refreshes: (0, 0),
        }
    }
}

/// A `refresh` that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RefreshError {
    #[error("this connection was not opened with a token")]
    NoToken,
    #[error("the new token is for another user")]
    OtherUser,
    #[error("a refresh of this connection is already being verified")]
    InProgress,
    #[error("at most {0} refreshes per minute per connection; retry later")]
    TooMany(u8),
    #[error("the token is not valid")]
    Invalid,
}

impl crate::shard::Shard {
    /// Starts a refresh of a token connection's grant: refused when the connection has
    /// no token, a refresh is being verified, or `max_refreshes_per_minute` were begun
    /// this minute. The token is then verified off the shard's thread and the outcome
    /// applied with [`Shard::end_refresh`](crate::Shard::end_refresh).
    pub(crate) fn begin_refresh(&self, slot: usize) -> Result<(), RefreshError> {
        let minute = (self.millis(tokio::time::Instant::now()) / 60_000) as u16;
        let max = self.config.max_refreshes_per_minute;
        let mut st = self.state.lock();
        let entry = st.grants.get_mut(&slot).ok_or(RefreshError::NoToken)?;
        if entry.refreshing {
            return Err(RefreshError::InProgress);
        }
        if entry.refreshes.0 != minute {
            entry.refreshes = (minute, 0);
        }
        if max > 0 && entry.refreshes.1 >= max {
            return Err(RefreshError::TooMany(max));
        }
        entry.refreshes.1 += 1;
        entry.refreshing = true;
        Ok(())
    }

    /// Ends a refresh begun by [`begin_refresh`](Self::begin_refresh): with the verified
    /// token's user and grant, applies it ([`ConnHandle::refresh`](crate::ConnHandle::refresh));
    /// with `None` (the token was refused), keeps the old grant. `None` if the
    /// connection is gone meanwhile.
    pub fn end_refresh(
        &self,
        id: pushgate_protocol::ConnId,
        verified: Option<(&str, Grant)>,
    ) -> Option<Result<Vec<String>, RefreshError>> {
        let slot = {
            let mut st = self.state.lock();
            let slot = *st.by_id.get(&id)?;
            if let Some(entry) = st.grants.get_mut(&slot) {
                entry.refreshing = false;
            }
            slot
        };
        Some(match verified {
            Some((user, grant)) => self.apply_refresh(slot, user, grant),
            None => Err(RefreshError::Invalid),
        })
    }

    /// Replaces a connection's grant with a fresh token's (same user). Channels the new
    /// grant does not allow are unsubscribed and returned.
    pub(crate) fn apply_refresh(
        &self,
        slot: usize,
        user: &str,
        grant: Grant,
    ) -> Result<Vec<String>, RefreshError> {
        let mut st = self.state.lock();
        if st.conns[slot].user.as_deref() != Some(user) {
            return Err(if st.grants.contains_key(&slot) {
                RefreshError::OtherUser
            } else {
                RefreshError::NoToken
            });
        }
        let Some(entry) = st.grants.get_mut(&slot) else {
            return Err(RefreshError::NoToken);
        };
        entry.grant = grant;
        entry.warned = false;
        let perms = entry.grant.permissions.clone();
        let revoked: Vec<String> = st.conns[slot]
            .channels
            .iter()
            .filter(|c| !perms.allows(c))
            .map(|c| c.to_string())
            .collect();
        if !revoked.is_empty() {
            st.unsubscribe(slot, &revoked);
            self.update_gauges(st);
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use bytes::Bytes;
    use pushgate_protocol::ConnId;

    use super::*;
    use crate::{CloseReason, ConnHandle, Hub, HubConfig, Outgoing, SubscribeError};

    fn hub(grace: Duration) -> Hub {
        Hub::new(HubConfig {
            shards: 1,
            token_refresh_grace: grace,
            ..HubConfig::default()
        })
    }

    fn grant(patterns: &[&str], expires: u64) -> Grant {
        Grant {
            permissions: Arc::new(Permissions::new(patterns).unwrap()),
            expires,
            info: None,
        }
    }

    fn now_s() -> u64 {
        crate::heartbeat::unix_millis() / 1000
    }

    /// What the writer would get right now: text frames as strings, and a close.
    fn drain(h: &ConnHandle) -> (Vec<String>, Option<CloseReason>) {
        let mut out: VecDeque<Bytes> = VecDeque::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut frames = Vec::new();
        loop {
            match h.poll_outgoing(&mut cx, &mut out, true) {
                Poll::Ready(Outgoing::Frames) => frames.extend(
                    out.drain(..)
                        .map(|f| String::from_utf8_lossy(&f[2..]).into_owned()),
                ),
                Poll::Ready(Outgoing::Close(r)) => return (frames, Some(r)),
                Poll::Pending => return (frames, None),
            }
        }
    }

    #[tokio::test]
    async fn subscribe_is_limited_to_the_grant_and_refresh_revokes() {
        let hub = hub(Duration::from_secs(30));
        let shard = hub.shards()[0].clone();
        let h = shard.register_with(
            ConnId(1),
            Some("alice"),
            Some(grant(&["news", "user:alice:*"], now_s() + 60)),
            &["news".to_string()],
        );
        assert_eq!(shard.channel_subscribers("news"), 1, "joined on connect");
        h.subscribe(&["user:alice:inbox".into()]).unwrap();
        assert_eq!(
            h.subscribe(&["sport".into(), "news".into()]),
            Err(SubscribeError::NotAllowed("sport".into()))
        );
        // All or nothing.
        assert_eq!(shard.channel_subscribers("sport"), 0);
        assert_eq!(
            h.refresh("bob", grant(&["*"], now_s() + 60)),
            Err(RefreshError::OtherUser)
        );
        let revoked = h.refresh("alice", grant(&["news"], now_s() + 120)).unwrap();
        assert_eq!(revoked, vec!["user:alice:inbox".to_string()]);
        assert_eq!(shard.channel_subscribers("user:alice:inbox"), 0);
        // Anonymous connections are not limited and cannot refresh.
        let anon = shard.register(ConnId(2), None);
        anon.subscribe(&["sport".into()]).unwrap();
        assert_eq!(
            anon.refresh("alice", grant(&["*"], 0)),
            Err(RefreshError::NoToken)
        );
        drop(h);
        assert!(
            shard.state.lock().grants.is_empty(),
            "grant removed with the conn"
        );
    }

    #[tokio::test]
    async fn refreshes_are_one_at_a_time_and_limited_per_minute() {
        let hub = Hub::new(HubConfig {
            shards: 1,
            max_refreshes_per_minute: 3,
            ..HubConfig::default()
        });
        let shard = hub.shards()[0].clone();
        let h = shard.register_with(ConnId(1), Some("a"), Some(grant(&[], now_s() + 60)), &[]);
        h.begin_refresh().unwrap();
        assert_eq!(h.begin_refresh(), Err(RefreshError::InProgress));
        // A refused token keeps the old grant and ends the refresh.
        assert_eq!(
            shard.end_refresh(ConnId(1), None),
            Some(Err(RefreshError::Invalid))
        );
        h.begin_refresh().unwrap();
        let revoked = shard.end_refresh(ConnId(1), Some(("a", grant(&["x"], now_s() + 120))));
        assert_eq!(revoked, Some(Ok(vec![])));
        h.begin_refresh().unwrap();
        shard.end_refresh(ConnId(1), None);
        // Three begun this minute: the fourth waits for the next minute.
        assert_eq!(h.begin_refresh(), Err(RefreshError::TooMany(3)));
        let anon = shard.register(ConnId(2), None);
        assert_eq!(anon.begin_refresh(), Err(RefreshError::NoToken));
        drop(h);
        assert_eq!(shard.end_refresh(ConnId(1), None), None, "gone");
    }

    #[tokio::test]
    async fn the_sweep_warns_then_closes_an_expired_token() {
        let hub = hub(Duration::from_secs(3));
        let shard = hub.shards()[0].clone();
        let ping = Bytes::from_static(b"\x89\x00");
        let sweep = || shard.sweep(tokio::time::Instant::now(), &ping);
        let h = shard.register_with(ConnId(1), Some("a"), Some(grant(&[], now_s() - 1)), &[]);
        let fresh = shard.register_with(ConnId(2), Some("b"), Some(grant(&[], now_s() + 60)), &[]);
        assert_eq!(sweep().expired, 0, "in the grace period");
        let (frames, close) = drain(&h);
        assert!(
            frames.iter().any(|f| f.contains("token_expired")),
            "{frames:?}"
        );
        assert_eq!(close, None);
        assert_eq!(sweep().expired, 0);
        assert!(
            !drain(&h).0.iter().any(|f| f.contains("token_expired")),
            "warned once"
        );
        // Past expiry and grace: closed with 4003; the other connection is untouched.
        h.refresh("a", grant(&[], now_s() - 10)).unwrap();
        assert_eq!(sweep().expired, 1);
        assert_eq!(drain(&h).1, Some(CloseReason::TokenExpired));
        assert_eq!(drain(&fresh).1, None);
        assert_eq!(CloseReason::TokenExpired.code().0, 4003);
    }

    #[test]
    fn exact_names_and_prefix_patterns() {
        let p = Permissions::new(&["news", "user:alice:*", "room/"]).unwrap();
        assert!(p.allows("news"));
        assert!(!p.allows("news2"));
        assert!(p.allows("user:alice:inbox"));
        assert!(p.allows("user:alice:"));
        assert!(!p.allows("user:bob:inbox"));
        assert!(p.allows("room/"));
        assert!(!p.allows("room/1"), "no '*': exact only");
        let any = Permissions::new(&["*"]).unwrap();
        assert!(any.allows("anything"));
        assert!(!Permissions::new::<&str>(&[]).unwrap().allows("news"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Permissions::new(&["a b"]).is_err());
        assert!(Permissions::new(&["a*b"]).is_err(), "'*' only at the end");
        assert!(Permissions::new(&["**"]).is_err());
        assert!(Permissions::new(&[""]).is_err());
    }
}
