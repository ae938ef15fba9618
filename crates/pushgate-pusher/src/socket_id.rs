//! Socket ids: Pusher's `\d+\.\d+`, naming a connection anywhere in the cluster.
//!
//! `<node number>.<connection number>`: the node number is the FNV-1a (32-bit) hash of
//! the node id, the connection number pushgate's own. A publisher's `socket_id`
//! (exclude that connection) is thereby resolved to a node without asking anyone when
//! it is this node, and through the cluster's node list otherwise. Two node ids with
//! the same hash (about one chance in 4 billion per pair) would make an exclusion
//! ambiguous; the node id, not the number, is what the cluster routes by.

use std::fmt;

use pushgate_protocol::ConnId;

/// A connection's socket id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId {
    pub node: u32,
    pub conn: ConnId,
}

impl SocketId {
    pub fn new(node_id: &str, conn: ConnId) -> SocketId {
        SocketId {
            node: node_number(node_id),
            conn,
        }
    }

    /// Parses `\d+\.\d+`; `None` for anything else.
    pub fn parse(s: &str) -> Option<SocketId> {
        let (node, conn) = s.split_once('.')?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(node) || !digits(conn) {
            return None;
        }
        Some(SocketId {
            node: node.parse().ok()?,
            conn: ConnId(conn.parse().ok()?),
        })
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node, self.conn.0)
    }
}

/// The number a node's socket ids start with.
pub fn node_number(node_id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in node_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_forms() {
        let s = SocketId::new("n1", ConnId(42));
        let text = s.to_string();
        assert!(text.ends_with(".42"));
        assert_eq!(SocketId::parse(&text), Some(s));
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "1.2.3",
            "a.1",
            "1.-2",
            "1.99999999999999999999999",
        ] {
            assert_eq!(SocketId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn node_numbers_are_fnv1a() {
        // FNV-1a 32 test vectors.
        assert_eq!(node_number(""), 0x811c9dc5);
        assert_eq!(node_number("a"), 0xe40c292c);
        assert_ne!(node_number("n1"), node_number("n2"));
    }
}
