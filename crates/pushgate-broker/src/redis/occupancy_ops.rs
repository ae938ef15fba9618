//! Cluster-wide channel occupancy's Redis side, without the connections: the three
//! scripts, the commands they are called with and what their replies mean.
//!
//! Per group (a Pusher app), three keys sharing the group's hash tag (`wire::Keys`), so
//! that each script touches one Redis Cluster slot and runs atomically there too:
//!
//! - entries, a sorted set: `<channel>\n<node>` for each node that has the channel,
//!   scored by the Unix millisecond (Redis's clock) at which it expires unless its
//!   node refreshes it;
//! - counts, a hash: channel -> how many entries it has (a field exists only while
//!   the channel has one: it is occupied cluster-wide exactly then);
//! - swept, a hash: the entries a sweep removed because they had expired (a node
//!   stalled or cut off from Redis for longer than the TTL), so that the node's
//!   refresh, when it comes back, says the channel is occupied again.
//!
//! Every transition of a channel's count between 0 and 1 happens in one of these
//! scripts and is returned to the one node that ran it: that node sends the webhook,
//! so each transition is reported once in the cluster.

use super::resp::{self, Value};
use super::router::{Reply, Routed};
use super::topology;
use crate::wire::Keys;

/// Entries a sweep removes at most per group and call (the rest at the next one).
pub(crate) const SWEEP_LIMIT: usize = 1000;
/// How long a sweep's record of a removed entry is kept, in TTLs: a node cut off for
/// longer re-adds its entries silently (docs/pusher.md says what that costs).
pub(crate) const SWEPT_KEPT_TTLS: u32 = 10;

/// `KEYS`: entries, counts, swept. `ARGV`: ttl ms, node, then (flag, channel) pairs:
/// flag `1` for a channel this node just got (reported when it is the channel's first
/// entry), `0` for a refresh (reported only if a sweep had removed this node's entry
/// and the channel had none left, so that its `vacated` is followed by `occupied`).
/// Returns the channels to report occupied.
pub(crate) const PUT: &str = r"#!lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local out = {}
for i = 3, #ARGV, 2 do
  local ch = ARGV[i + 1]
  local e = ch .. '\n' .. ARGV[2]
  local swept = redis.call('HDEL', KEYS[3], e) == 1
  if redis.call('ZADD', KEYS[1], now + ttl, e) == 1 then
    if redis.call('HINCRBY', KEYS[2], ch, 1) == 1 and (ARGV[i] == '1' or swept) then
      out[#out + 1] = ch
    end
  end
end
return out
";

/// `KEYS`: entries, counts, swept. `ARGV`: node, channel. Returns 1 when this was the
/// channel's last entry (report it vacated), 0 otherwise, and 0 too when a sweep had
/// already removed the entry (the sweeping node reported it).
pub(crate) const VACATE: &str = r"#!lua
local e = ARGV[2] .. '\n' .. ARGV[1]
redis.call('HDEL', KEYS[3], e)
if redis.call('ZREM', KEYS[1], e) == 0 then
  return 0
end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
";

/// `KEYS`: entries, counts, swept. `ARGV`: limit, how long the swept records live (ms).
/// Removes expired entries (a node that died or lost Redis), records them as swept,
/// and returns the channels left with no entry (report them vacated).
pub(crate) const SWEEP: &str = r"#!lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, e in ipairs(dead) do
  redis.call('ZREM', KEYS[1], e)
  redis.call('HSET', KEYS[3], e, now)
  local ch = string.match(e, '^(.*)\n[^\n]*$')
  if ch and redis.call('HINCRBY', KEYS[2], ch, -1) <= 0 then
    redis.call('HDEL', KEYS[2], ch)
    out[#out + 1] = ch
  end
end
if #dead > 0 then
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2]))
end
return out
";

/// The scripts in the order of [`Shas`].
pub(crate) const SCRIPTS: [&str; 3] = [PUT, VACATE, SWEEP];

/// The scripts' SHA1s, as `EVALSHA` names them.
pub(crate) struct Shas {
    put: String,
    vacate: String,
    sweep: String,
}

impl Shas {
    pub(crate) fn computed() -> Shas {
        let sha = |s: &str| sha1_smol::Sha1::from(s).digest().to_string();
        Shas {
            put: sha(PUT),
            vacate: sha(VACATE),
            sweep: sha(SWEEP),
        }
    }
}

/// What encoding needs.
pub(crate) struct Ctx<'a> {
    pub(crate) keys: &'a Keys,
    pub(crate) shas: &'a Shas,
    pub(crate) node: &'a str,
    pub(crate) ttl_ms: String,
    /// How long a sweep's records live, in ms.
    pub(crate) swept_ms: String,
}

impl Ctx<'_> {
    /// The group's three keys and their slot.
    fn keys(&self, group: &str) -> ([String; 3], u16) {
        let e = self.keys.occupancy(group);
        let slot = topology::slot(e.as_bytes());
        let c = format!("{e}:count");
        let s = format!("{e}:swept");
        ([e, c, s], slot)
    }
}

/// A `PUT` of `channels` of `group`, each with its flag (`true`: just got).
pub(crate) fn put(ctx: &Ctx<'_>, group: &str, channels: &[(bool, &str)]) -> Routed {
    let ([e, c, s], slot) = ctx.keys(group);
    let mut args: Vec<&[u8]> = vec![
        b"EVALSHA",
        ctx.shas.put.as_bytes(),
        b"3",
        e.as_bytes(),
        c.as_bytes(),
        s.as_bytes(),
        ctx.ttl_ms.as_bytes(),
        ctx.node.as_bytes(),
    ];
    for (new, ch) in channels {
        args.push(if *new { b"1" } else { b"0" });
        args.push(ch.as_bytes());
    }
    routed(slot, args)
}

/// A `VACATE` of `channel` of `group` by this node.
pub(crate) fn vacate(ctx: &Ctx<'_>, group: &str, channel: &str) -> Routed {
    let ([e, c, s], slot) = ctx.keys(group);
    let args: [&[u8]; 8] = [
        b"EVALSHA",
        ctx.shas.vacate.as_bytes(),
        b"3",
        e.as_bytes(),
        c.as_bytes(),
        s.as_bytes(),
        ctx.node.as_bytes(),
        channel.as_bytes(),
    ];
    routed(slot, args)
}

/// A `SWEEP` of `group`.
pub(crate) fn sweep(ctx: &Ctx<'_>, group: &str) -> Routed {
    let ([e, c, s], slot) = ctx.keys(group);
    let limit = SWEEP_LIMIT.to_string();
    let args: [&[u8]; 8] = [
        b"EVALSHA",
        ctx.shas.sweep.as_bytes(),
        b"3",
        e.as_bytes(),
        c.as_bytes(),
        s.as_bytes(),
        limit.as_bytes(),
        ctx.swept_ms.as_bytes(),
    ];
    routed(slot, args)
}

fn routed<'a>(slot: u16, args: impl IntoIterator<Item = &'a [u8]>) -> Routed {
    let mut bytes = Vec::new();
    resp::command(&mut bytes, args);
    Routed { slot, bytes }
}

/// Why a reply cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ReplyError {
    #[error("redis answered {0}")]
    Redis(String),
    #[error("not run: {0}")]
    NotSent(crate::error::Unavailable),
    #[error("no answer: {0}")]
    Lost(crate::error::Uncertain),
    #[error("unexpected reply {0:?}")]
    Shape(Value),
}

/// The channels a `PUT` or a `SWEEP` returned.
pub(crate) fn channels(r: Reply) -> Result<Vec<String>, ReplyError> {
    match value(r)? {
        Value::Array(Some(items)) => items
            .into_iter()
            .map(|v| match v.as_bytes().map(|b| std::str::from_utf8(b)) {
                Some(Ok(s)) => Ok(s.to_owned()),
                _ => Err(ReplyError::Shape(v)),
            })
            .collect(),
        v => Err(ReplyError::Shape(v)),
    }
}

/// Whether a `VACATE` emptied the channel.
pub(crate) fn emptied(r: Reply) -> Result<bool, ReplyError> {
    match value(r)? {
        Value::Int(n) => Ok(n == 1),
        v => Err(ReplyError::Shape(v)),
    }
}

fn value(r: Reply) -> Result<Value, ReplyError> {
    match r {
        Reply::Got(Value::Error(e)) => Err(ReplyError::Redis(e)),
        Reply::Got(v) => Ok(v),
        Reply::NotSent(u) => Err(ReplyError::NotSent(u)),
        Reply::Lost(u) => Err(ReplyError::Lost(u)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(Bytes::from(s.to_owned())))
    }

    fn ctx<'a>(keys: &'a Keys, shas: &'a Shas) -> Ctx<'a> {
        Ctx {
            keys,
            shas,
            node: "n1",
            ttl_ms: "3000".into(),
            swept_ms: "30000".into(),
        }
    }

    #[test]
    fn every_command_of_a_group_goes_to_its_slot() {
        let (keys, shas) = (Keys::new("pg"), Shas::computed());
        let ctx = ctx(&keys, &shas);
        let slot = topology::slot(b"{app-1}");
        let cmds = [
            put(&ctx, "app-1", &[(true, "a"), (false, "b")]),
            vacate(&ctx, "app-1", "a"),
            sweep(&ctx, "app-1"),
        ];
        assert!(cmds.iter().all(|c| c.slot == slot));
        let text = String::from_utf8_lossy(&cmds[0].bytes).into_owned();
        for part in [
            "pg:occupancy:{app-1}\r\n",
            "pg:occupancy:{app-1}:count\r\n",
            "pg:occupancy:{app-1}:swept\r\n",
            "$1\r\n1\r\n$1\r\na\r\n$1\r\n0\r\n$1\r\nb\r\n",
        ] {
            assert!(text.contains(part), "{part:?} in {text:?}");
        }
        assert_ne!(slot, topology::slot(b"{app-2}"));
    }

    #[test]
    fn replies_are_read_or_refused() {
        let arr = |v: Vec<Value>| Reply::Got(Value::Array(Some(v)));
        assert_eq!(
            channels(arr(vec![bulk("a"), bulk("b")])).unwrap(),
            ["a", "b"]
        );
        assert!(channels(arr(vec![])).unwrap().is_empty());
        assert!(channels(Reply::Got(Value::Error("NOSCRIPT".into()))).is_err());
        assert!(channels(Reply::Got(Value::Int(1))).is_err());
        assert!(emptied(Reply::Got(Value::Int(1))).unwrap());
        assert!(!emptied(Reply::Got(Value::Int(0))).unwrap());
        assert!(emptied(Reply::NotSent(crate::error::Unavailable::Connecting)).is_err());
    }
}
