//! The presence scripts run by a real `redis-server` (on the PATH, as for the cluster
//! tests; `make test` installs it through tests/deps.sh): each user's count, the
//! judgement of its first join and last leave, a refresh that runs ahead of a join,
//! an expired member swept, and the events the scripts publish, decoded by `wire`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pushgate_protocol::ConnId;

use super::presence_ops::member_value;
use super::presence_scripts::{change_reply, put_reply, read_reply, JOIN, LEAVE, PUT, READ};
use super::resp::{self, Value};
use crate::wire::{self, Keys, PresenceNote, What};

/// A `redis-server` on a free loopback port, killed when dropped.
struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed: run `bash tests/deps.sh` (make test does)");
    let s = Server(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

struct Conn(TcpStream, BytesMut);

impl Conn {
    fn open(s: &Server) -> Conn {
        let t = TcpStream::connect(("127.0.0.1", s.1)).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Conn(t, BytesMut::new())
    }

    fn send(&mut self, args: &[&[u8]]) {
        let mut out = Vec::new();
        resp::command(&mut out, args.iter().copied());
        self.0.write_all(&out).unwrap();
    }

    fn value(&mut self) -> Value {
        loop {
            if let Some(v) = resp::parse(&mut self.1).unwrap() {
                return v;
            }
            let mut buf = [0u8; 4096];
            let n = self.0.read(&mut buf).expect("a reply in time");
            assert!(n > 0, "redis closed the connection");
            self.1.extend_from_slice(&buf[..n]);
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Value {
        self.send(args);
        self.value()
    }
}

const CH: &str = "room";

/// `EVAL` of a script on the channel's three keys.
fn eval(c: &mut Conn, script: &str, argv: &[&[u8]]) -> Value {
    let k = Keys::new("t");
    let (h, z, u) = (k.presence(CH), k.presence_expiry(CH), k.presence_users(CH));
    let mut args: Vec<&[u8]> = vec![b"EVAL", script.as_bytes(), b"3"];
    args.extend([h.as_bytes(), z.as_bytes(), u.as_bytes()]);
    args.extend(argv);
    c.call(&args)
}

fn bus() -> String {
    Keys::new("t").channel(CH)
}

fn join(c: &mut Conn, n: u64, user: &str) -> (bool, Vec<String>) {
    let note = note(n, user, true);
    let (head, tail) = wire::presence_parts("n1", &note);
    let (conn, v) = (format!("n1-{n}"), member_value(Some(user), None));
    let r = eval(
        c,
        JOIN,
        &[
            b"60000",
            b"64",
            bus().as_bytes(),
            &head,
            &tail,
            conn.as_bytes(),
            v.as_bytes(),
        ],
    );
    change_reply(&r).unwrap_or_else(|| panic!("{r:?}"))
}

fn leave(c: &mut Conn, n: u64, user: &str) -> bool {
    let (head, tail) = wire::presence_parts("n1", &note(n, user, false));
    let conn = format!("n1-{n}");
    let r = eval(c, LEAVE, &[bus().as_bytes(), &head, &tail, conn.as_bytes()]);
    change_reply(&r).unwrap_or_else(|| panic!("{r:?}")).0
}

fn note(n: u64, user: &str, joined: bool) -> PresenceNote {
    PresenceNote {
        joined,
        conn: ConnId(n),
        user: Some(user.into()),
        info: None,
        user_edge: None,
        swept: false,
    }
}

/// The next event on the bus key, decoded.
fn heard(sub: &mut Conn) -> (String, PresenceNote) {
    let v = sub.value();
    let Value::Array(Some(items)) = v else {
        panic!("{v:?}")
    };
    let body: Bytes = items[2].as_bytes().unwrap().clone();
    let b = wire::decode(body, false).unwrap();
    match b.what {
        What::Presence(n) => (b.origin, n),
        w => panic!("{w:?}"),
    }
}

#[test]
fn scripts_judge_each_users_first_join_and_last_leave_once() {
    let s = start();
    let mut c = Conn::open(&s);
    let mut sub = Conn::open(&s);
    sub.call(&[b"SSUBSCRIBE", bus().as_bytes()]);

    // u's first member is its edge; a second is not; a JOIN of a field already there
    // (never sent twice, but a refresh may have put it) changes nothing.
    assert_eq!(join(&mut c, 1, "u"), (true, vec![]));
    assert_eq!(join(&mut c, 2, "u"), (false, vec![]));
    assert_eq!(join(&mut c, 2, "u"), (false, vec![]));
    let (origin, n) = heard(&mut sub);
    assert_eq!(
        (origin.as_str(), n.user_edge, n.swept),
        ("n1", Some(true), false)
    );
    assert_eq!(heard(&mut sub).1.user_edge, Some(false));
    heard(&mut sub);
    // Leaves: a field not there (twice) counts nothing; the last one is the edge.
    assert!(!leave(&mut c, 1, "u"));
    assert!(!leave(&mut c, 1, "u"));
    assert!(leave(&mut c, 2, "u"));
    let notes: Vec<_> = (0..3).map(|_| heard(&mut sub).1.user_edge).collect();
    assert_eq!(notes, [Some(false), Some(false), Some(true)]);
    let users = Keys::new("t").presence_users(CH);
    assert_eq!(c.call(&[b"EXISTS", users.as_bytes()]), Value::Int(0));

    // A refresh that runs ahead of v's JOIN puts it back and makes the edge (a swept
    // join); the JOIN then finds its field.
    let v = member_value(Some("v"), Some(r#"{"a":1}"#));
    let r = eval(
        &mut c,
        PUT,
        &[b"60000", b"64", bus().as_bytes(), b"n1-3", v.as_bytes()],
    );
    assert_eq!(put_reply(&r), Some((vec![], vec!["v".to_owned()])));
    let (_, n) = heard(&mut sub);
    assert_eq!(
        (n.joined, n.conn, n.user_edge, n.swept, n.info.as_deref()),
        (true, ConnId(3), Some(true), true, Some(r#"{"a":1}"#))
    );
    assert_eq!(join(&mut c, 3, "v"), (false, vec![]));
    heard(&mut sub);
    // Refreshing what is there announces nothing.
    let r = eval(
        &mut c,
        PUT,
        &[b"60000", b"64", bus().as_bytes(), b"n1-3", v.as_bytes()],
    );
    assert_eq!(put_reply(&r), Some((vec![], vec![])));

    // A dead node's member (its expiry passed): the next read sweeps it, once.
    assert!(join(&mut c, 4, "w").0);
    heard(&mut sub);
    let z = Keys::new("t").presence_expiry(CH);
    c.call(&[b"ZADD", z.as_bytes(), b"0", b"n1-4"]);
    let r = eval(&mut c, READ, &[bus().as_bytes()]);
    let (members, gone) = read_reply(&r).unwrap();
    assert_eq!((members.len(), gone), (2, vec!["w".to_owned()]), "v stays");
    let (origin, n) = heard(&mut sub);
    assert_eq!(
        (
            origin.as_str(),
            n.joined,
            n.conn,
            n.user.as_deref(),
            n.user_edge,
            n.swept
        ),
        ("n1", false, ConnId(4), Some("w"), Some(true), true)
    );
    let r = eval(&mut c, READ, &[bus().as_bytes()]);
    assert_eq!(read_reply(&r).map(|(m, g)| (m.len(), g)), Some((2, vec![])));
}
