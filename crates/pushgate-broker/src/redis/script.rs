//! The Lua scripts the publisher runs (`EVALSHA`; loaded with `SCRIPT LOAD` on each
//! connection, and again on `NOSCRIPT`), the commands that call them and what their
//! replies mean. A script runs atomically in Redis, so a history channel's next offset,
//! its stream entry and its `SPUBLISH` happen as one step: no node ever sees an offset
//! whose publication is not in the stream, or the other way round.
//!
//! Keys of a channel share its bus key's hash tag (`wire::Keys`), so every script
//! touches one Redis Cluster slot. The scripts start with `#!lua` (Redis 7): Redis
//! refuses them up front when it is out of memory, instead of failing half way.

use std::time::Duration;

use bytes::Bytes;
use pushgate_hub::{HistoryPage, Snapshot, SnapshotEntry};
use pushgate_protocol::{Payload, Position};

use super::resp::{self, Value};
use crate::wire::{self, What};

/// Publishes to a history channel. KEYS: meta hash, stream, [idempotency key].
/// ARGV: bus channel, body head, payload, epoch candidate, size, stream ttl (ms), meta
/// ttl (ms), [idempotency window (ms)]. Returns `{offset, epoch, receivers, duplicate}`.
///
/// The epoch is created by the first publication (or sync) after the meta hash was
/// lost, from the candidate the node sends; a stream left from an older epoch is
/// dropped then. The stream entry `<offset>-0` holds the whole bus body (`b`) and the
/// Redis time it was added, in ms (`t`).
pub(crate) const PUBLISH_HISTORY: &str = r#"#!lua
local idem = KEYS[3]
if idem then
  local first = redis.call('GET', idem)
  if first then
    local o, n, e = string.match(first, '^(%d+) (%d+) (.*)$')
    return {tonumber(o), e, tonumber(n), 1}
  end
end
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[4]) == 1 then
  redis.call('DEL', KEYS[2])
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local body = ARGV[2] .. string.char(#epoch) .. epoch .. struct.pack('<I8', offset) .. ARGV[3]
local t = redis.call('TIME')
local ms = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], offset .. '-0', 'b', body, 't', ms)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local n = redis.call('SPUBLISH', ARGV[1], body)
if idem then
  redis.call('SET', idem, offset .. ' ' .. n .. ' ' .. epoch, 'PX', ARGV[8])
end
return {offset, epoch, n, 0}
"#;

/// Publishes with an idempotency key on a bus channel without history. KEYS:
/// idempotency key. ARGV: bus channel, body, window (ms). Returns `{receivers,
/// duplicate}`.
pub(crate) const PUBLISH_KEYED: &str = r#"#!lua
local first = redis.call('GET', KEYS[1])
if first then
  return {tonumber(first), 1}
end
local n = redis.call('SPUBLISH', ARGV[1], ARGV[2])
redis.call('SET', KEYS[1], n, 'PX', ARGV[3])
return {n, 0}
"#;

/// Reads a history channel's stream for a node that follows it. KEYS: meta hash,
/// stream. ARGV: the offset the node has (0: none), the epoch it has ('' : none), an
/// epoch candidate, meta ttl (ms), size. Returns `{epoch, top, now (ms), entries}`:
/// the entries after the node's offset when they are in the same epoch and within
/// `size`, otherwise the newest `size`, oldest first.
///
/// A Redis that restarted from an older snapshot can have a smaller top than what a
/// node delivered in the same epoch: the top is raised to the node's, so that those
/// offsets are never given to other publications.
pub(crate) const SYNC: &str = r#"#!lua
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[3]) == 1 then
  redis.call('DEL', KEYS[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
local since = tonumber(ARGV[1])
local size = tonumber(ARGV[5])
if epoch == ARGV[2] and top < since then
  redis.call('HSET', KEYS[1], 'top', since)
  top = since
end
local entries
if epoch == ARGV[2] and top - since <= size then
  entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+', 'COUNT', size)
else
  local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', size)
  entries = {}
  for i = #newest, 1, -1 do
    entries[#entries + 1] = newest[i]
  end
end
local t = redis.call('TIME')
return {epoch, top, t[1] * 1000 + math.floor(t[2] / 1000), entries}
"#;

/// Reads a page of a history channel (the HTTP and gRPC `History` calls on a Redis
/// node). KEYS: meta hash, stream. ARGV: since ('' : the newest), limit, an epoch
/// candidate (used, as by [`SYNC`], if the channel has none yet), size, ttl (ms), meta
/// ttl (ms). Returns `{epoch, top, oldest, entries}`: `oldest` is the first offset
/// kept (within `size` of the top and younger than the ttl), `top + 1` if none.
pub(crate) const READ: &str = r#"#!lua
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[3]) == 1 then
  redis.call('DEL', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local cutoff = t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(ARGV[5])
local oldest = top + 1
local from = math.max(top - tonumber(ARGV[4]) + 1, 1)
while from <= top do
  local batch = redis.call('XRANGE', KEYS[2], from .. '-0', '+', 'COUNT', 100)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    local o = tonumber(string.match(e[1], '^(%d+)'))
    if tonumber(e[2][4]) > cutoff then
      oldest = o
      break
    end
    from = o + 1
  end
  if oldest <= top then break end
end
local entries = {}
if oldest <= top then
  if ARGV[1] ~= '' then
    local start = math.max(tonumber(ARGV[1]) + 1, oldest)
    entries = redis.call('XRANGE', KEYS[2], start .. '-0', '+', 'COUNT', limit)
  else
    local newest = redis.call('XREVRANGE', KEYS[2], '+', oldest .. '-0', 'COUNT', limit)
    for i = #newest, 1, -1 do
      entries[#entries + 1] = newest[i]
    end
  end
end
return {epoch, top, oldest, entries}
"#;

/// The scripts, in the order their SHA1 digests are kept.
pub(crate) const ALL: [&str; 4] = [PUBLISH_HISTORY, PUBLISH_KEYED, SYNC, READ];

/// The digests Redis gave the scripts (`SCRIPT LOAD`), in the order of [`ALL`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Shas(pub(crate) [String; 4]);

impl Shas {
    pub(crate) fn history(&self) -> &[u8] {
        self.0[0].as_bytes()
    }
    pub(crate) fn keyed(&self) -> &[u8] {
        self.0[1].as_bytes()
    }
    pub(crate) fn sync(&self) -> &[u8] {
        self.0[2].as_bytes()
    }
    pub(crate) fn read(&self) -> &[u8] {
        self.0[3].as_bytes()
    }
}

impl Shas {
    /// The digests Redis gives the scripts (SHA1 of their text), so that every node
    /// of a deployment is called with the same ones, known before any connects.
    pub(crate) fn computed() -> Shas {
        Shas(ALL.map(|s| sha1_smol::Sha1::from(s).digest().to_string()))
    }
}

/// Whether Redis answered that it does not know the script (after `SCRIPT FLUSH`).
pub(crate) fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::Error(e) if e.starts_with("NOSCRIPT"))
}

/// What one bus command of a publication reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    /// Nodes following the bus channel.
    pub(crate) receivers: u32,
    /// History channels: where the publication is.
    pub(crate) position: Option<Position>,
    /// Answered from an idempotency key: not published again.
    pub(crate) duplicate: bool,
}

/// Reads the reply to `SPUBLISH` or to one of the publish scripts.
pub(crate) fn published(v: &Value) -> Option<Published> {
    let int = |v: &Value| match v {
        Value::Int(n) => Some(*n),
        _ => None,
    };
    match v {
        Value::Int(n) => Some(Published {
            receivers: (*n).max(0) as u32,
            position: None,
            duplicate: false,
        }),
        Value::Array(Some(items)) if items.len() == 2 => Some(Published {
            receivers: int(&items[0])?.max(0) as u32,
            position: None,
            duplicate: int(&items[1])? == 1,
        }),
        Value::Array(Some(items)) if items.len() == 4 => Some(Published {
            receivers: int(&items[2])?.max(0) as u32,
            position: Some(Position {
                epoch: String::from_utf8(items[1].as_bytes()?.to_vec()).ok()?,
                offset: u64::try_from(int(&items[0])?).ok()?,
            }),
            duplicate: int(&items[3])? == 1,
        }),
        _ => None,
    }
}

/// Reads the reply to [`SYNC`].
pub(crate) fn snapshot(v: &Value) -> Option<Snapshot> {
    let Value::Array(Some(items)) = v else {
        return None;
    };
    let [epoch, Value::Int(top), Value::Int(now), Value::Array(Some(raw))] = &items[..] else {
        return None;
    };
    let epoch = String::from_utf8(epoch.as_bytes()?.to_vec()).ok()?;
    let mut entries = Vec::with_capacity(raw.len());
    for e in raw {
        if let Some(e) = entry(e, *now) {
            entries.push(e);
        }
    }
    Some(Snapshot {
        epoch,
        top: u64::try_from(*top).ok()?,
        entries,
    })
}

/// Reads the reply to [`READ`].
pub(crate) fn page(v: &Value) -> Option<HistoryPage> {
    let Value::Array(Some(items)) = v else {
        return None;
    };
    let [epoch, Value::Int(top), Value::Int(oldest), Value::Array(Some(raw))] = &items[..] else {
        return None;
    };
    Some(HistoryPage {
        epoch: String::from_utf8(epoch.as_bytes()?.to_vec()).ok()?,
        offset: u64::try_from(*top).ok()?,
        oldest: u64::try_from(*oldest).ok()?,
        publications: raw
            .iter()
            .filter_map(|e| entry(e, 0))
            .map(|e| (e.offset, e.payload))
            .collect(),
    })
}

/// One stream entry: `[<offset>-0, [b, <bus body>, t, <ms>]]`.
fn entry(v: &Value, now_ms: i64) -> Option<SnapshotEntry> {
    let Value::Array(Some(parts)) = v else {
        return None;
    };
    let [id, Value::Array(Some(fields))] = &parts[..] else {
        return None;
    };
    let id = std::str::from_utf8(id.as_bytes()?).ok()?;
    let offset: u64 = id.split('-').next()?.parse().ok()?;
    let (mut body, mut at) = (None::<Bytes>, None::<i64>);
    for kv in fields.chunks(2) {
        match (kv[0].as_bytes().map(|b| &b[..]), kv.get(1)) {
            (Some(b"b"), Some(v)) => body = v.as_bytes().cloned(),
            (Some(b"t"), Some(v)) => {
                at = std::str::from_utf8(v.as_bytes()?).ok()?.parse().ok();
            }
            _ => {}
        }
    }
    let payload = match wire::decode(body?, false).ok()?.what {
        What::Publication(p) => p,
        What::Control(_) | What::Presence(_) | What::Census(_) => return None,
    };
    Some(SnapshotEntry {
        offset,
        payload,
        age: Duration::from_millis(now_ms.saturating_sub(at?).max(0) as u64),
    })
}

/// Appends the history script's call.
#[allow(clippy::too_many_arguments)]
pub(crate) fn call_history(
    out: &mut Vec<u8>,
    shas: &Shas,
    keys: &wire::Keys,
    channel: &str,
    head: &[u8],
    payload: &Payload,
    epoch: &str,
    rule: &pushgate_hub::HistoryRule,
    idempotency: Option<(&str, Duration)>,
) {
    let bus = keys.channel(channel);
    let (meta, stream) = (keys.meta(channel), keys.stream(channel));
    let size = rule.size.to_string();
    let ttl = ms(rule.ttl);
    let meta_ttl = ms(meta_ttl(rule.ttl));
    let idem = idempotency.map(|(k, w)| (wire::Keys::idempotency(&bus, k), ms(w)));
    let nkeys: &[u8] = if idem.is_some() { b"3" } else { b"2" };
    let mut args: Vec<&[u8]> = vec![
        b"EVALSHA",
        shas.history(),
        nkeys,
        meta.as_bytes(),
        stream.as_bytes(),
    ];
    if let Some((k, _)) = &idem {
        args.push(k.as_bytes());
    }
    args.extend([
        bus.as_bytes(),
        head,
        wire::payload_bytes(payload),
        epoch.as_bytes(),
        size.as_bytes(),
        ttl.as_bytes(),
        meta_ttl.as_bytes(),
    ]);
    if let Some((_, w)) = &idem {
        args.push(w.as_bytes());
    }
    resp::command(out, args);
}

/// Appends the keyed script's call for one bus channel.
pub(crate) fn call_keyed(
    out: &mut Vec<u8>,
    shas: &Shas,
    bus: &str,
    body: &[u8],
    key: &str,
    window: Duration,
) {
    let idem = wire::Keys::idempotency(bus, key);
    let w = ms(window);
    resp::command(
        out,
        [
            &b"EVALSHA"[..],
            shas.keyed(),
            b"1",
            idem.as_bytes(),
            bus.as_bytes(),
            body,
            w.as_bytes(),
        ],
    );
}

/// Appends the sync script's call.
pub(crate) fn call_sync(
    out: &mut Vec<u8>,
    shas: &Shas,
    keys: &wire::Keys,
    channel: &str,
    have: Option<(&str, u64)>,
    candidate: &str,
    rule: &pushgate_hub::HistoryRule,
) {
    let (meta, stream) = (keys.meta(channel), keys.stream(channel));
    let (epoch, since) = have.unwrap_or(("", 0));
    let since = since.to_string();
    let meta_ttl = ms(meta_ttl(rule.ttl));
    let size = rule.size.to_string();
    resp::command(
        out,
        [
            &b"EVALSHA"[..],
            shas.sync(),
            b"2",
            meta.as_bytes(),
            stream.as_bytes(),
            since.as_bytes(),
            epoch.as_bytes(),
            candidate.as_bytes(),
            meta_ttl.as_bytes(),
            size.as_bytes(),
        ],
    );
}

/// Appends the read script's call.
#[allow(clippy::too_many_arguments)]
pub(crate) fn call_read(
    out: &mut Vec<u8>,
    shas: &Shas,
    keys: &wire::Keys,
    channel: &str,
    since: Option<u64>,
    limit: usize,
    candidate: &str,
    rule: &pushgate_hub::HistoryRule,
) {
    let (meta, stream) = (keys.meta(channel), keys.stream(channel));
    let since = since.map(|s| s.to_string()).unwrap_or_default();
    let (limit, size) = (limit.to_string(), rule.size.to_string());
    let (ttl, meta_ttl) = (ms(rule.ttl), ms(meta_ttl(rule.ttl)));
    resp::command(
        out,
        [
            &b"EVALSHA"[..],
            shas.read(),
            b"2",
            meta.as_bytes(),
            stream.as_bytes(),
            since.as_bytes(),
            limit.as_bytes(),
            candidate.as_bytes(),
            size.as_bytes(),
            ttl.as_bytes(),
            meta_ttl.as_bytes(),
        ],
    );
}

/// How long a history channel's epoch and last offset are kept after its last
/// publication: a day, or the rule's ttl if longer. Longer than the publications
/// themselves, so that a client whose position is the last offset of a quiet
/// channel still resumes (with nothing to catch up) instead of being told
/// `unrecovered`.
pub(crate) fn meta_ttl(ttl: Duration) -> Duration {
    ttl.max(Duration::from_secs(24 * 3600))
}

fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_for_each_command_kind() {
        let bulk = |s: &str| Value::Bulk(Some(Bytes::from(s.to_owned())));
        assert_eq!(published(&Value::Int(3)).unwrap().receivers, 3);
        let keyed = Value::Array(Some(vec![Value::Int(2), Value::Int(1)]));
        assert!(published(&keyed).unwrap().duplicate);
        let hist = Value::Array(Some(vec![
            Value::Int(42),
            bulk("e1"),
            Value::Int(3),
            Value::Int(0),
        ]));
        let p = published(&hist).unwrap();
        assert_eq!(
            p.position,
            Some(Position {
                epoch: "e1".into(),
                offset: 42
            })
        );
        assert!(published(&Value::Error("ERR".into())).is_none());
        assert!(is_noscript(&Value::Error("NOSCRIPT No matching".into())));
        // What Redis answered SCRIPT LOAD with (7.0): the lowercase hex SHA1.
        let sha = Shas::computed();
        assert_eq!(sha.0[0].len(), 40);
        assert!(sha.0.iter().all(|s| s
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())));
    }
}
