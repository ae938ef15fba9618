//! Where each key lives: the one primary (standalone, or the one Sentinel names), or
//! for a Redis Cluster the master of the key's hash slot, from `CLUSTER SLOTS`.
//!
//! A key's slot is CRC16 (XMODEM) of its hash tag (the part between the first `{`
//! and the next `}`, if not empty) or of the whole key, modulo 16384, as Redis
//! computes it. Every key and bus channel of one pushgate channel carries the
//! channel's name as its hash tag (`wire::Keys`), so they share one slot.

use super::conn::{Conn, ConnError, Dialer};
use super::deployment::Mode;
use super::resp::Value;

pub const SLOTS: usize = 16384;

/// The slot of a key, as Redis Cluster computes it.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(tagged) % SLOTS as u16
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Where commands go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// Every key on one primary.
    Single(String),
    /// The master of each slot (`None`: not served now).
    Slots(Vec<Option<String>>),
}

impl Topology {
    /// The node that serves `slot` (any slot on a single primary).
    pub fn node(&self, slot: u16) -> Option<&str> {
        match self {
            Topology::Single(a) => Some(a),
            Topology::Slots(s) => s.get(slot as usize)?.as_deref(),
        }
    }

    /// A `MOVED` answer: the slot is served by `addr` now.
    pub fn moved(&mut self, slot: u16, addr: &str) {
        if let Topology::Slots(s) = self {
            if let Some(e) = s.get_mut(slot as usize) {
                *e = Some(addr.to_owned());
            }
        }
    }

    /// Every node that serves a slot, once each.
    pub fn nodes(&self) -> Vec<String> {
        match self {
            Topology::Single(a) => vec![a.clone()],
            Topology::Slots(s) => {
                let mut out: Vec<String> = Vec::new();
                for a in s.iter().flatten() {
                    if !out.contains(a) {
                        out.push(a.clone());
                    }
                }
                out
            }
        }
    }

    /// The nodes to ask for the slot map again: the known ones first, then the seeds.
    fn candidates(&self, seeds: &[String]) -> Vec<String> {
        let mut out = self.nodes();
        for s in seeds {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }
}

/// A redirection in an error reply: `MOVED <slot> <addr>` or `ASK <slot> <addr>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    Moved(u16, String),
    Ask(u16, String),
}

impl Redirect {
    pub fn of(v: &Value) -> Option<Redirect> {
        let Value::Error(e) = v else { return None };
        let mut it = e.split(' ');
        let kind = it.next()?;
        let slot: u16 = it.next()?.parse().ok()?;
        let addr = it.next()?.to_owned();
        match kind {
            "MOVED" => Some(Redirect::Moved(slot, addr)),
            "ASK" => Some(Redirect::Ask(slot, addr)),
            _ => None,
        }
    }
}

/// Finds where keys live now: the standalone seed; the slot map from the first
/// cluster node that answers (known nodes, then seeds); the primary the first
/// sentinel that knows it names, checked with `ROLE`.
pub async fn discover(dialer: &Dialer, known: Option<&Topology>) -> Result<Topology, ConnError> {
    let d = &dialer.deployment;
    match &d.mode {
        Mode::Standalone => Ok(Topology::Single(d.seeds[0].clone())),
        Mode::Cluster => {
            let candidates = match known {
                Some(t) => t.candidates(&d.seeds),
                None => d.seeds.clone(),
            };
            let mut last = None;
            for addr in candidates {
                match cluster_slots(dialer, &addr).await {
                    Ok(t) => return Ok(t),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| ConnError::NoPrimary("no seed".into())))
        }
        Mode::Sentinel { master } => {
            let mut last = None;
            for s in &d.seeds {
                match ask_sentinel(dialer, s, master).await {
                    Ok(addr) => return Ok(Topology::Single(addr)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| ConnError::NoPrimary("no sentinel".into())))
        }
    }
}

async fn cluster_slots(dialer: &Dialer, addr: &str) -> Result<Topology, ConnError> {
    let mut c = dialer.open(addr).await?;
    let v = tokio::time::timeout(dialer.timeout, c.call(&[b"CLUSTER", b"SLOTS"]))
        .await
        .map_err(|_| ConnError::Timeout(addr.to_owned(), dialer.timeout))??;
    parse_slots(&v, addr).ok_or_else(|| ConnError::Refused(format!("CLUSTER SLOTS: {v:?}")))
}

/// `CLUSTER SLOTS`: `[[start, end, [host, port, id...], replicas...]...]`. A host of
/// `""` (older Redis) or `?` means the node that was asked.
fn parse_slots(v: &Value, asked: &str) -> Option<Topology> {
    let Value::Array(Some(ranges)) = v else {
        return None;
    };
    let asked_host = asked.rsplit_once(':').map_or(asked, |(h, _)| h);
    let mut slots = vec![None; SLOTS];
    for r in ranges {
        let Value::Array(Some(r)) = r else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(Some(master)))) =
            (r.first(), r.get(1), r.get(2))
        else {
            return None;
        };
        let host = master.first()?.as_bytes()?;
        let host = std::str::from_utf8(host).ok()?;
        let host = if host.is_empty() || host == "?" {
            asked_host
        } else {
            host
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return None;
        };
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        for s in *start..=*end {
            *slots.get_mut(usize::try_from(s).ok()?)? = Some(addr.clone());
        }
    }
    Some(Topology::Slots(slots))
}

async fn ask_sentinel(dialer: &Dialer, sentinel: &str, master: &str) -> Result<String, ConnError> {
    let attempt = async {
        let mut c = dialer.open_sentinel(sentinel).await?;
        let v = c
            .call(&[b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", master.as_bytes()])
            .await?;
        let addr = match &v {
            Value::Array(Some(hp)) if hp.len() == 2 => {
                let h = hp[0]
                    .as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                let p = hp[1]
                    .as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                match (h, p) {
                    (Some(h), Some(p)) if h.contains(':') => format!("[{h}]:{p}"),
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    _ => return Err(ConnError::NoPrimary(format!("{sentinel}: {v:?}"))),
                }
            }
            _ => {
                return Err(ConnError::NoPrimary(format!(
                    "sentinel {sentinel} does not know {master:?}: {v:?}"
                )))
            }
        };
        Ok::<_, ConnError>(addr)
    };
    let addr = tokio::time::timeout(dialer.timeout, attempt)
        .await
        .map_err(|_| ConnError::Timeout(sentinel.to_owned(), dialer.timeout))??;
    // A sentinel can name a primary that was demoted a moment ago: ask it.
    let mut c = dialer.open(&addr).await?;
    check_primary(&mut c, dialer).await?;
    Ok(addr)
}

/// `ROLE` must say `master` (Sentinel mode: a demoted primary is a replica).
pub async fn check_primary(c: &mut Conn, dialer: &Dialer) -> Result<(), ConnError> {
    let v = tokio::time::timeout(dialer.timeout, c.call(&[b"ROLE"]))
        .await
        .map_err(|_| ConnError::Timeout(c.addr.clone(), dialer.timeout))??;
    match &v {
        Value::Array(Some(items))
            if items
                .first()
                .and_then(Value::as_bytes)
                .is_some_and(|r| &r[..] == b"master") =>
        {
            Ok(())
        }
        _ => Err(ConnError::NoPrimary(format!(
            "{} is not a primary: {v:?}",
            c.addr
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"pushgate:ch:{chat:1}:stream"), slot(b"chat:1"));
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
    }

    #[test]
    fn reads_cluster_slots_and_redirects() {
        let b = |s: &str| Value::Bulk(Some(Bytes::from(s.to_owned())));
        let range = |a: i64, z: i64, host: &str, port: i64| {
            Value::Array(Some(vec![
                Value::Int(a),
                Value::Int(z),
                Value::Array(Some(vec![b(host), Value::Int(port), b("id")])),
            ]))
        };
        let v = Value::Array(Some(vec![
            range(0, 5460, "127.0.0.1", 7000),
            range(5461, 16383, "", 7001),
        ]));
        let t = parse_slots(&v, "10.0.0.9:7005").unwrap();
        assert_eq!(t.node(0), Some("127.0.0.1:7000"));
        assert_eq!(t.node(16383), Some("10.0.0.9:7001"));
        assert_eq!(t.nodes().len(), 2);
        let mut t = t;
        t.moved(3, "h:1");
        assert_eq!(t.node(3), Some("h:1"));
        let e = Value::Error("MOVED 3999 127.0.0.1:6381".into());
        assert_eq!(
            Redirect::of(&e),
            Some(Redirect::Moved(3999, "127.0.0.1:6381".into()))
        );
        let e = Value::Error("ASK 1 h:2".into());
        assert_eq!(Redirect::of(&e), Some(Redirect::Ask(1, "h:2".into())));
        assert_eq!(Redirect::of(&Value::Error("ERR x".into())), None);
    }
}
