//! Pusher's rules for the names the API takes: channels, socket ids, user ids.

/// Longest channel name Pusher accepts.
pub const MAX_CHANNEL_LEN: usize = 164;

/// Channel names: `[A-Za-z0-9_\-=@,.;]`, 1 to 164 of them, or `#server-to-user-` and
/// such a name (the channel of `pusher:signin` users).
pub fn valid_channel(name: &str) -> bool {
    let rest = name.strip_prefix("#server-to-user-").unwrap_or(name);
    !rest.is_empty()
        && name.len() <= MAX_CHANNEL_LEN
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b))
}

/// Socket ids as Pusher writes them: two runs of digits joined by a dot (`123.456`).
pub fn valid_socket_id(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    id.split_once('.')
        .is_some_and(|(a, b)| digits(a) && digits(b))
}

/// User ids: 1 to 200 characters (the server SDKs' own check).
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= 200
}

pub fn is_presence(channel: &str) -> bool {
    channel.starts_with("presence-")
}

pub fn is_encrypted(channel: &str) -> bool {
    channel.starts_with("private-encrypted-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        for ok in [
            "a",
            "private-x",
            "presence-room;1,2@x=y.z_-",
            "#server-to-user-42",
        ] {
            assert!(valid_channel(ok), "{ok}");
        }
        let long = "a".repeat(MAX_CHANNEL_LEN + 1);
        for bad in [
            "",
            "a b",
            "a:b",
            "a/b",
            "#server-to-user-",
            "#x",
            long.as_str(),
        ] {
            assert!(!valid_channel(bad), "{bad}");
        }
    }

    #[test]
    fn socket_ids() {
        assert!(valid_socket_id("123.456"));
        for bad in ["", "123", "1.2.3", "a.1", ".1", "1.", "1.2 "] {
            assert!(!valid_socket_id(bad), "{bad}");
        }
    }
}
