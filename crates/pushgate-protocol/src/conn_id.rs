//! Connection ids: `<node>-<n>`, unique across the nodes of a cluster.

use std::fmt;

/// A connection's id on this node. Its display form is prefixed with the node id,
/// so that an id handed to a client names the node that holds the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// Formats the cluster-wide form of this id.
    pub fn display(self, node: &str) -> impl fmt::Display + '_ {
        struct D<'a>(&'a str, u64);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}-{}", self.0, self.1)
            }
        }
        D(node, self.0)
    }

    /// Parses `<node>-<n>`; returns the node part and the local id.
    pub fn parse(s: &str) -> Option<(&str, ConnId)> {
        let (node, n) = s.rsplit_once('-')?;
        if node.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((node, ConnId(n.parse().ok()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_dashed_node_names() {
        let s = ConnId(42).display("node-a").to_string();
        assert_eq!(s, "node-a-42");
        assert_eq!(ConnId::parse(&s), Some(("node-a", ConnId(42))));
    }

    #[test]
    fn refuses_malformed_ids() {
        for bad in ["", "42", "-42", "a-", "a-4x", "a-99999999999999999999999"] {
            assert_eq!(ConnId::parse(bad), None, "{bad}");
        }
    }
}
