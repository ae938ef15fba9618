//! Pusher channel names: their kinds, and how they map to pushgate channels (and
//! Pusher user ids to pushgate users), so that every app has its own namespace.
//!
//! The mapping is `pusher/<app id>/<name>`, both parts escaped: characters outside
//! `A-Z a-z 0-9 _ - . : @` (for Pusher names: `=`, `,` and `;`) become `=XX`, the byte
//! in upper-case hex. It is injective (the separator `/` never appears escaped), so two
//! apps never share a pushgate channel, and it reads as written for the usual names:
//! app `1`, channel `private-chat.7` is `pusher/1/private-chat.7`. Users map the same
//! way (`pusher/1/alice`). docs/pusher.md has the table.

use pushgate_protocol::MAX_CHANNEL_LEN;
use thiserror::Error;

/// The prefix of every mapped name.
pub const PREFIX: &str = "pusher/";
/// The longest Pusher channel name (Pusher's own limit).
pub const MAX_NAME_LEN: usize = 164;
/// The prefix of a signed-in user's own channel (Pusher's "send to user").
pub const SERVER_TO_USER: &str = "#server-to-user-";

/// What kind of channel a name is, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    /// `private-`: subscribing needs a signature.
    Private,
    /// `private-encrypted-`: as private; the server only relays (end-to-end encrypted
    /// payloads), and client events are refused, as by Pusher.
    PrivateEncrypted,
    /// `presence-`: a signature over the member's `channel_data`; members are shared.
    Presence,
    /// `#server-to-user-<id>`: only the connection signed in as `<id>` may follow it.
    ServerToUser,
}

impl ChannelKind {
    pub fn of(name: &str) -> ChannelKind {
        if name.starts_with(SERVER_TO_USER) {
            ChannelKind::ServerToUser
        } else if name.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if name.starts_with("private-") {
            ChannelKind::Private
        } else if name.starts_with("presence-") {
            ChannelKind::Presence
        } else {
            ChannelKind::Public
        }
    }

    /// Whether subscribing needs a signature (a user's channel needs a sign-in instead).
    pub fn needs_auth(self) -> bool {
        matches!(
            self,
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence
        )
    }

    /// Whether `client-*` events may be sent on it (with the app's `client_events`).
    pub fn allows_client_events(self) -> bool {
        matches!(self, ChannelKind::Private | ChannelKind::Presence)
    }
}

/// Why a Pusher channel name (or user id) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("channel name contains {0:?}; allowed: letters, digits and _ - = @ , . ;")]
    BadChar(char),
    #[error("channel {0:?} is reserved for the server")]
    Reserved(String),
    #[error("{0:?} is too long once mapped to a pushgate name (at most {MAX_CHANNEL_LEN} bytes)")]
    TooLongMapped(String),
    #[error("user id is empty")]
    EmptyUser,
}

/// Checks a Pusher channel name: 1-164 of `A-Z a-z 0-9 _ - = @ , . ;`, or a user's
/// `#server-to-user-<id>` (any non-empty id); other `#` names are refused.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if let Some(user) = name.strip_prefix(SERVER_TO_USER) {
        return match user.is_empty() {
            true => Err(NameError::Reserved(name.to_owned())),
            false => Ok(()),
        };
    }
    if name.starts_with('#') {
        return Err(NameError::Reserved(name.to_owned()));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-=@,.;".contains(*c)))
    {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}

fn kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-.:@".contains(&b)
}

fn escape_into(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if kept(b) {
            out.push(b as char);
        } else {
            out.push('=');
            out.push_str(&format!("{b:02X}"));
        }
    }
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if kept(b[i]) {
            out.push(b[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

fn mapped(app_id: &str, name: &str) -> String {
    let mut out = String::with_capacity(PREFIX.len() + app_id.len() + name.len() + 8);
    out.push_str(PREFIX);
    escape_into(&mut out, app_id);
    out.push('/');
    escape_into(&mut out, name);
    out
}

/// The pushgate channel of app `app_id`'s channel `name` (checked first).
pub fn to_pushgate(app_id: &str, name: &str) -> Result<String, NameError> {
    validate(name)?;
    let m = mapped(app_id, name);
    if m.len() > MAX_CHANNEL_LEN {
        return Err(NameError::TooLongMapped(name.to_owned()));
    }
    Ok(m)
}

/// The start of the pushgate names of app `app_id`'s channels whose Pusher names
/// start with `prefix` (any text, unchecked): escaping maps each byte on its own and
/// always escapes `=`, so a name starts with `prefix` exactly when its mapped name
/// starts with this.
pub fn prefix_to_pushgate(app_id: &str, prefix: &str) -> String {
    mapped(app_id, prefix)
}

/// The app id and Pusher channel name of a mapped pushgate channel; `None` if it is
/// not one.
pub fn from_pushgate(channel: &str) -> Option<(String, String)> {
    let rest = channel.strip_prefix(PREFIX)?;
    let (app, name) = rest.split_once('/')?;
    Some((unescape(app)?, unescape(name)?))
}

/// The pushgate user of app `app_id`'s user `user_id` (users of different apps never
/// meet: `terminate_connections` of one app reaches only its own).
pub fn user_to_pushgate(app_id: &str, user_id: &str) -> Result<String, NameError> {
    if user_id.is_empty() {
        return Err(NameError::EmptyUser);
    }
    let m = mapped(app_id, user_id);
    if m.len() > pushgate_protocol::MAX_USER_LEN {
        return Err(NameError::TooLongMapped(user_id.to_owned()));
    }
    Ok(m)
}

/// The pattern of a `[[presence]]` rule covering app `app_id`'s presence channels.
pub fn presence_pattern(app_id: &str) -> String {
    format!("{}*", mapped(app_id, "presence-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_protocol::{validate_channel, validate_user};

    #[test]
    fn a_mapped_prefix_matches_exactly_the_mapped_names_it_should() {
        for (prefix, name, starts) in [
            ("", "news", true),
            ("presence-", "presence-room", true),
            ("a=", "a=b", true),
            ("a", "=3Db", false),
            ("a=3", "a=3b", true),
            ("a=3", "a=b", false),
            ("#server-to-user-", "#server-to-user-1", true),
            ("b", "ab", false),
        ] {
            let m = to_pushgate("1", name).unwrap();
            assert_eq!(
                m.starts_with(&prefix_to_pushgate("1", prefix)),
                starts,
                "{prefix:?} {name:?}"
            );
            assert_eq!(name.starts_with(prefix), starts);
        }
        assert!(!to_pushgate("10", "x")
            .unwrap()
            .starts_with(&prefix_to_pushgate("1", "")));
    }

    #[test]
    fn kinds_follow_the_prefix() {
        assert_eq!(ChannelKind::of("news"), ChannelKind::Public);
        assert_eq!(ChannelKind::of("private-a"), ChannelKind::Private);
        assert_eq!(
            ChannelKind::of("private-encrypted-a"),
            ChannelKind::PrivateEncrypted
        );
        assert_eq!(ChannelKind::of("presence-a"), ChannelKind::Presence);
        assert!(!ChannelKind::PrivateEncrypted.allows_client_events());
        assert!(ChannelKind::Presence.allows_client_events());
        assert!(!ChannelKind::Public.needs_auth());
    }

    #[test]
    fn names_are_checked_as_pusher_does() {
        for ok in ["a", "private-chat.7", "x=y@z,w;v", &"a".repeat(164)] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate(&"a".repeat(165)), Err(NameError::TooLong));
        assert_eq!(validate("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(validate("a/b"), Err(NameError::BadChar('/')));
        assert_eq!(validate("#server-to-user-a b"), Ok(()));
        assert_eq!(
            ChannelKind::of("#server-to-user-1"),
            ChannelKind::ServerToUser
        );
        for bad in ["#server-to-user-", "#other"] {
            assert!(
                matches!(validate(bad), Err(NameError::Reserved(_))),
                "{bad}"
            );
        }
        assert_eq!(
            to_pushgate("1", "#server-to-user-u").unwrap(),
            "pusher/1/=23server-to-user-u"
        );
    }

    #[test]
    fn the_mapping_is_readable_reversible_and_valid_for_pushgate() {
        let m = to_pushgate("1", "private-chat.7").unwrap();
        assert_eq!(m, "pusher/1/private-chat.7");
        let odd = to_pushgate("app/2", "a=b,c;d").unwrap();
        assert_eq!(odd, "pusher/app=2F2/a=3Db=2Cc=3Bd");
        assert_eq!(
            from_pushgate(&odd),
            Some(("app/2".into(), "a=b,c;d".into()))
        );
        for m in [&m, &odd] {
            assert_eq!(validate_channel(m), Ok(()));
        }
        assert_eq!(from_pushgate("news"), None);
        assert_eq!(from_pushgate("pusher/1"), None);
        assert_eq!(from_pushgate("pusher/1/a=4"), None, "truncated escape");
        assert_eq!(from_pushgate("pusher/1/a,b"), None, "not escaped");
    }

    #[test]
    fn apps_are_isolated() {
        // "1/x" escaped never equals app "1" followed by a name.
        let a = to_pushgate("1", "x").unwrap();
        let b = to_pushgate("1/x", "y");
        assert_ne!(Some(a.as_str()), b.as_deref().ok());
        assert_ne!(
            user_to_pushgate("1", "u").unwrap(),
            user_to_pushgate("2", "u").unwrap()
        );
    }

    #[test]
    fn long_names_are_refused_once_mapped() {
        let long = "a".repeat(125);
        assert!(matches!(
            to_pushgate("1", &long),
            Err(NameError::TooLongMapped(_))
        ));
        assert!(to_pushgate("1", &"a".repeat(119)).is_ok());
    }

    #[test]
    fn users_and_presence_patterns() {
        let u = user_to_pushgate("1", "auth0|42 x").unwrap();
        assert_eq!(u, "pusher/1/auth0=7C42=20x");
        assert_eq!(validate_user(&u), Ok(()));
        assert_eq!(presence_pattern("1"), "pusher/1/presence-*");
        assert_eq!(user_to_pushgate("1", ""), Err(NameError::EmptyUser));
    }
}
