//! Presence's Lua scripts and what their replies mean. Beside a channel's member hash
//! and expiry set, a third key counts each user's members (`wire::Keys::presence_users`),
//! kept by the scripts only, so that whether a change is its user's first join or
//! last leave of the channel is judged once for the whole cluster, atomically: two
//! nodes removing a user's last two connections at once get one edge between them.
//!
//! - `JOIN`: the member's field, +1 for its user only when the field is new; the
//!   change's note is `SPUBLISH`ed by the script with the judgement in its flags
//!   (`wire::presence_parts`), so notes are in the order of the changes in Redis.
//! - `LEAVE`: `HDEL`, −1 only if the field existed, 0 removes the user (an edge).
//! - `PUT` (the periodic refresh): moves the expiry of members already there and puts
//!   missing ones back (after Redis lost them, or ahead of their own `JOIN`, still
//!   queued behind the refresh), +1 each; a user that gets its first member so is
//!   announced by a join note flagged swept (no pushgate.v1 event: that is per
//!   connection) and returned, and the member's own `JOIN` then finds its field.
//! - `READ`: the members.
//!
//! Each script but `LEAVE` first removes expired members (a dead node's; `PUT` and
//! `JOIN` at most [`PRUNE_ON_PUT`](super::presence_ops::PRUNE_ON_PUT) of them): −1 for
//! each one's user, and for a user whose last member expired, a leave note flagged
//! swept and the user in the reply. Swept notes are built here, byte for byte as
//! `wire::encode_presence` writes them; the users returned are reported once for the
//! cluster by the node that ran the script.

use bytes::Bytes;

use super::resp::Value;

/// Functions every script starts with. KEYS of every script: the member hash, the
/// expiry set, the user counts.
macro_rules! prelude {
    () => {
        r#"#!lua
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function user_of(v)
  return string.match(v, '^([^\n]*)')
end
local function keep(ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
-- Removes member c; returns its user when that was the user's last member, and its value.
local function drop(c)
  local v = redis.call('HGET', KEYS[1], c)
  redis.call('ZREM', KEYS[2], c)
  if not v then
    return nil, nil
  end
  redis.call('HDEL', KEYS[1], c)
  local user = user_of(v)
  if user == '' or redis.call('HINCRBY', KEYS[3], user, -1) > 0 then
    return nil, v
  end
  redis.call('HDEL', KEYS[3], user)
  return user, v
end
-- Counts left without members (a key evicted apart from the others) go with the last one.
local function tidy()
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[3])
  end
end
-- A swept note (op 4 join, 5 leave) of member c with value v, on bus: judged, an edge,
-- no pushgate.v1 event. c is `<node>-<n>`, the note's origin and connection number.
local function swept(op, c, v, bus)
  local node, n = string.match(c, '^(.+)%-(%d+)$')
  if not node then
    return
  end
  node = string.sub(node, 1, 255)
  local u = string.sub(user_of(v), 1, 255)
  local info = string.match(v, '^[^\n]*\n(.*)$') or ''
  redis.call('SPUBLISH', bus, string.char(1, 4, #node) .. node .. string.char(op, 7, 0)
    .. struct.pack('<I8', tonumber(n)) .. string.char(#u) .. u .. info)
end
-- Removes expired members (at most limit; 0: all); announces each user whose last
-- member expired on bus and returns those users.
local function expire(now, limit, bus)
  local dead
  if limit > 0 then
    dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
  else
    dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  end
  local gone = {}
  for _, c in ipairs(dead) do
    local user, v = drop(c)
    if user then
      swept(5, c, v, bus)
      gone[#gone + 1] = user
    end
  end
  if #dead > 0 then
    tidy()
  end
  return gone
end
"#
    };
}

/// The periodic refresh. ARGV: ttl ms, prune limit, bus channel, then connection id,
/// value pairs. Returns `{users whose last member expired, users whose first member
/// was put back}`.
pub(crate) const PUT: &str = concat!(
    prelude!(),
    r#"
local now = now_ms()
local ttl = tonumber(ARGV[1])
local gone = expire(now, tonumber(ARGV[2]), ARGV[3])
local back = {}
for i = 4, #ARGV, 2 do
  if redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    local user = user_of(ARGV[i + 1])
    if user ~= '' and redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
      swept(4, ARGV[i], ARGV[i + 1], ARGV[3])
      back[#back + 1] = user
    end
  end
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[i])
end
keep(ttl)
return {gone, back}
"#
);

/// A join. ARGV: ttl ms, prune limit, bus channel, note head, note tail, connection
/// id, value. Returns `{edge (0/1), users whose last member expired}`.
pub(crate) const JOIN: &str = concat!(
    prelude!(),
    r#"
local now = now_ms()
local ttl = tonumber(ARGV[1])
local gone = expire(now, tonumber(ARGV[2]), ARGV[3])
local edge = 0
if redis.call('HSET', KEYS[1], ARGV[6], ARGV[7]) == 1 then
  local user = user_of(ARGV[7])
  if user ~= '' and redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
    edge = 1
  end
end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[6])
keep(ttl)
redis.call('SPUBLISH', ARGV[3], ARGV[4] .. string.char(1 + 2 * edge, 0) .. ARGV[5])
return {edge, gone}
"#
);

/// A leave. ARGV: bus channel, note head, note tail, connection id. Returns `{edge
/// (0/1), {}}`.
pub(crate) const LEAVE: &str = concat!(
    prelude!(),
    r#"
local edge = 0
if drop(ARGV[4]) then
  edge = 1
end
tidy()
redis.call('SPUBLISH', ARGV[1], ARGV[2] .. string.char(1 + 2 * edge, 0) .. ARGV[3])
return {edge, {}}
"#
);

/// A read. ARGV: bus channel. Removes every expired member, returns `{HGETALL of
/// the members, users whose last member expired}`.
pub(crate) const READ: &str = concat!(
    prelude!(),
    r#"
local gone = expire(now_ms(), 0, ARGV[1])
return {redis.call('HGETALL', KEYS[1]), gone}
"#
);

/// The scripts in the order of [`Shas`].
pub(crate) const SCRIPTS: [&str; 4] = [PUT, JOIN, LEAVE, READ];

/// The scripts' SHA1s, as `EVALSHA` names them (Redis's digest of their text).
pub(crate) struct Shas {
    pub(crate) put: String,
    pub(crate) join: String,
    pub(crate) leave: String,
    pub(crate) read: String,
}

impl Shas {
    pub(crate) fn computed() -> Shas {
        let sha = |s: &str| sha1_smol::Sha1::from(s).digest().to_string();
        Shas {
            put: sha(PUT),
            join: sha(JOIN),
            leave: sha(LEAVE),
            read: sha(READ),
        }
    }
}

/// A `{edge, gone}` reply (`JOIN`, `LEAVE`): whether the change was its user's edge,
/// and the users whose last member expired. `None`: not such a reply.
pub(crate) fn change_reply(v: &Value) -> Option<(bool, Vec<String>)> {
    let Value::Array(Some(items)) = v else {
        return None;
    };
    let edge = match items.first()? {
        Value::Int(e) => *e == 1,
        _ => return None,
    };
    Some((edge, users(items.get(1)?)?))
}

/// A `READ` reply: the `HGETALL` items and the users whose last member expired.
pub(crate) fn read_reply(v: &Value) -> Option<(&[Value], Vec<String>)> {
    let Value::Array(Some(items)) = v else {
        return None;
    };
    match items.first()? {
        Value::Array(Some(members)) => Some((members, users(items.get(1)?)?)),
        _ => None,
    }
}

/// A `PUT` reply: the users whose last member expired, and those whose first member
/// it put back.
pub(crate) fn put_reply(v: &Value) -> Option<(Vec<String>, Vec<String>)> {
    let Value::Array(Some(items)) = v else {
        return None;
    };
    Some((users(items.first()?)?, users(items.get(1)?)?))
}

/// A list of user names.
pub(crate) fn users(v: &Value) -> Option<Vec<String>> {
    let Value::Array(Some(items)) = v else {
        return None;
    };
    items
        .iter()
        .map(|u| {
            let b: &Bytes = match u {
                Value::Bulk(Some(b)) => b,
                _ => return None,
            };
            String::from_utf8(b.to_vec()).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::Bulk(Some(Bytes::from(s.to_owned())))
    }

    #[test]
    fn replies_parse_edges_and_expired_users() {
        let arr = |v: Vec<Value>| Value::Array(Some(v));
        let r = arr(vec![Value::Int(1), arr(vec![b("bob")])]);
        assert_eq!(change_reply(&r), Some((true, vec!["bob".to_owned()])));
        let r = arr(vec![Value::Int(0), arr(vec![])]);
        assert_eq!(change_reply(&r), Some((false, vec![])));
        assert_eq!(change_reply(&Value::Int(1)), None);
        let r = arr(vec![arr(vec![]), arr(vec![b("ann")])]);
        assert_eq!(put_reply(&r), Some((vec![], vec!["ann".to_owned()])));
        assert_eq!(put_reply(&arr(vec![b("x")])), None);
        assert_eq!(change_reply(&Value::Error("NOSCRIPT".into())), None);
        let r = arr(vec![arr(vec![b("n1-1"), b("u\n")]), arr(vec![b("eve")])]);
        let (members, gone) = read_reply(&r).unwrap();
        assert_eq!((members.len(), gone), (2, vec!["eve".to_owned()]));
        assert_eq!(read_reply(&arr(vec![b("x")])), None);
        assert_eq!(users(&arr(vec![b("a"), Value::Int(3)])), None);
    }

    #[test]
    fn every_script_is_lua_of_redis_7_with_the_prelude() {
        for s in SCRIPTS {
            assert!(s.starts_with("#!lua\n") && s.contains("local function expire"));
        }
        let sh = Shas::computed();
        let mut all = [&sh.put, &sh.join, &sh.leave, &sh.read];
        all.sort();
        assert!(all.windows(2).all(|w| w[0] != w[1]));
    }
}
