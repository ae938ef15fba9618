//! Property tests of the protocol types: the frame codec against a masking client
//! encoder, the frame reader on arbitrary bytes and splits, channel names against a
//! reference predicate, the command parser, connection ids and publication envelopes.
//!
//! Case counts are modest so that `make test` stays quick; raise them for a long run
//! with `PROPTEST_CASES=10000 cargo test -p pushgate-protocol --test properties`.

use proptest::prelude::*;
use pushgate_protocol::frame::{encode_frame, FrameReader, OpCode, ProtocolError, Step};
use pushgate_protocol::{
    encode_publication, validate_channel, Command, ConnId, Payload, MAX_CHANNEL_LEN,
};

/// Turns an unmasked (server) frame into the masked client frame carrying the same
/// payload, optionally clearing FIN and replacing the opcode (for fragments).
fn masked(server_frame: &[u8], key: [u8; 4], fin: bool, opcode: Option<u8>) -> Vec<u8> {
    let header = match server_frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let op = opcode.unwrap_or(server_frame[0] & 0x0F);
    pushgate_test_support::frame::masked(fin, op, &server_frame[header..], key)
}

/// A message as the reader returns it, owned.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

impl From<pushgate_protocol::Message<'_>> for Got {
    fn from(m: pushgate_protocol::Message<'_>) -> Got {
        use pushgate_protocol::Message as M;
        match m {
            M::Text(t) => Got::Text(t.to_owned()),
            M::Binary(b) => Got::Binary(b.to_vec()),
            M::Ping(p) => Got::Ping(p.to_vec()),
            M::Pong(p) => Got::Pong(p.to_vec()),
            M::Close(c, r) => Got::Close(c, r.to_owned()),
            M::Deflated { .. } => {
                unreachable!("only with deflate on, which these tests never turn on")
            }
        }
    }
}

/// Feeds `stream` to a reader in pieces cut at `cuts` (sorted, any values), keeping the
/// unconsumed tail between pieces as the edge does. Returns the messages and the error
/// that stopped the reader, if any.
fn read_in_pieces(stream: &[u8], cuts: &[usize], max: usize) -> (Vec<Got>, Option<ProtocolError>) {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.push(stream.len());
    bounds.sort_unstable();
    let mut reader = FrameReader::new();
    let mut pending = Vec::new();
    let mut got = Vec::new();
    let mut fed = 0;
    for end in bounds {
        pending.extend_from_slice(&stream[fed..end]);
        fed = end;
        let mut at = 0;
        loop {
            match reader.next(&mut pending[at..], max) {
                Ok(Step::NeedMore) => break,
                Ok(Step::Consumed(n)) => at += n,
                Ok(Step::Message(n, m)) => {
                    got.push(Got::from(m));
                    at += n;
                }
                Err(e) => return (got, Some(e)),
            }
        }
        pending.drain(..at);
    }
    (got, None)
}

/// A data message, possibly fragmented, with a ping between its fragments.
#[derive(Debug, Clone)]
struct DataMessage {
    expect: Got,
    frames: Vec<Vec<u8>>,
}

fn data_message() -> impl Strategy<Value = DataMessage> {
    let payload = prop_oneof![
        any::<String>().prop_map(|s| (OpCode::Text, s.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (OpCode::Binary, b)),
        // Crosses the 16-bit length boundary now and then.
        (65530usize..65540).prop_map(|n| (OpCode::Binary, vec![0xA5; n])),
    ];
    (
        payload,
        proptest::collection::vec(any::<usize>(), 0..4),
        any::<[u8; 4]>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=125)),
    )
        .prop_map(|((op, bytes), cuts, key, ping)| {
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            bounds.sort_unstable();
            bounds.dedup();
            bounds.push(bytes.len());
            let mut frames = Vec::new();
            let mut from = 0;
            for (i, &to) in bounds.iter().enumerate() {
                let last = i + 1 == bounds.len();
                let opcode = if i == 0 { None } else { Some(0x0) };
                let f = encode_frame(op, &bytes[from..to]);
                frames.push(masked(&f, key, last, opcode));
                if i == 0 && !last {
                    if let Some(p) = &ping {
                        frames.push(masked(&encode_frame(OpCode::Ping, p), key, true, None));
                    }
                }
                from = to;
            }
            let expect = match op {
                OpCode::Text => Got::Text(String::from_utf8(bytes).expect("from a String")),
                _ => Got::Binary(bytes),
            };
            DataMessage { expect, frames }
        })
}

fn control_message() -> impl Strategy<Value = (Got, Vec<u8>)> {
    let small = proptest::collection::vec(any::<u8>(), 0..=125);
    let reason = "[a-zA-Zé€ ]{0,30}";
    let code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    (
        prop_oneof![
            small
                .clone()
                .prop_map(|p| (Got::Ping(p.clone()), OpCode::Ping, p)),
            small.prop_map(|p| (Got::Pong(p.clone()), OpCode::Pong, p)),
            (code, reason).prop_map(|(c, r)| {
                let mut p = c.to_be_bytes().to_vec();
                p.extend_from_slice(r.as_bytes());
                (Got::Close(Some(c), r), OpCode::Close, p)
            }),
        ],
        any::<[u8; 4]>(),
    )
        .prop_map(|((got, op, payload), key)| {
            (got, masked(&encode_frame(op, &payload), key, true, None))
        })
}

fn channel_reference(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CHANNEL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:@/=".contains(&b))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// encode_frame → masking client encoder → FrameReader gives back every payload,
    /// for any opcode, length, fragmentation, interleaved ping and split of the stream.
    #[test]
    fn frames_round_trip_through_the_reader(
        messages in proptest::collection::vec(data_message(), 1..4),
        control in proptest::option::of(control_message()),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut stream = Vec::new();
        let mut expect = Vec::new();
        for m in &messages {
            for f in &m.frames {
                stream.extend_from_slice(f);
                if f[0] & 0x0F == 0x9 {
                    let key = [f[2], f[3], f[4], f[5]];
                    let p: Vec<u8> = f[6..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
                    expect.push(Got::Ping(p));
                }
            }
            expect.push(m.expect.clone());
        }
        if let Some((got, frame)) = &control {
            stream.extend_from_slice(frame);
            expect.push(got.clone());
        }
        let (got, err) = read_in_pieces(&stream, &cuts, 1 << 20);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, expect);
    }

    /// Arbitrary bytes never make the reader panic, and however they are split the
    /// reader sees the same messages and stops on the same error.
    #[test]
    fn any_bytes_read_the_same_whatever_the_split(
        stream in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        max in prop_oneof![Just(0usize), Just(125), Just(300), Just(65536)],
    ) {
        let whole = read_in_pieces(&stream, &[], max);
        let split = read_in_pieces(&stream, &cuts, max);
        prop_assert_eq!(whole, split);
    }

    /// The same, on streams of mostly well-formed frames (where arbitrary bytes would
    /// almost always fail at the first header): a valid stream's messages do not
    /// depend on how it is split, and a bit flipped anywhere is refused or read the
    /// same whatever the split.
    #[test]
    fn valid_streams_read_the_same_whatever_the_split(
        messages in proptest::collection::vec(data_message(), 1..3),
        cuts in proptest::collection::vec(any::<usize>(), 1..8),
        flip in proptest::option::of((any::<usize>(), 0u8..8)),
    ) {
        let mut stream: Vec<u8> = messages.iter().flat_map(|m| m.frames.concat()).collect();
        if let Some((at, bit)) = flip {
            let at = at % stream.len();
            stream[at] ^= 1 << bit;
        }
        let whole = read_in_pieces(&stream, &[], 1 << 17);
        let split = read_in_pieces(&stream, &cuts, 1 << 17);
        prop_assert_eq!(whole, split);
    }

    /// validate_channel agrees with the documented rule on any string, including
    /// strings made mostly of allowed characters.
    #[test]
    fn channel_validation_matches_the_rule(
        s in prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9_.:@/=-]{0,130}",
            "[a-z0-9_=/ é\\-\u{0}]{1,10}",
        ]
    ) {
        prop_assert_eq!(validate_channel(&s).is_ok(), channel_reference(&s), "{:?}", s);
    }

    /// Command::parse never panics, on any text or on near-commands; whatever it
    /// accepts names only valid channels.
    #[test]
    fn command_parse_never_panics(
        text in prop_oneof![
            any::<String>(),
            (
                prop_oneof![Just("subscribe"), Just("unsubscribe"), Just("ping"), Just("x")],
                proptest::collection::vec(any::<String>(), 0..3),
                any::<Option<i64>>(),
            )
                .prop_map(|(t, chans, id)| {
                    serde_json::json!({"type": t, "channels": chans, "id": id}).to_string()
                }),
        ]
    ) {
        match Command::parse(&text) {
            Ok(Command::Subscribe { channels, .. }) | Ok(Command::Unsubscribe { channels, .. }) => {
                for c in &channels {
                    prop_assert!(channel_reference(c), "{:?}", c);
                }
            }
            Ok(_) | Err(_) => {}
        }
    }

    /// A well-formed subscribe command comes back with its channels and id.
    #[test]
    fn valid_subscribe_commands_parse(
        channels in proptest::collection::vec("[a-zA-Z0-9_.:@/=-]{1,20}", 1..10),
        id in any::<u32>(),
    ) {
        let text = serde_json::json!({"type": "subscribe", "channels": channels, "id": id}).to_string();
        prop_assert_eq!(
            Command::parse(&text),
            Ok(Command::Subscribe { channels, since: vec![], latest: false, presence_events: false, id: Some(serde_json::json!(id)) })
        );
    }

    /// A connection id's display form parses back to the node and the id, also when
    /// the node id contains dashes.
    #[test]
    fn conn_id_display_parse_round_trip(node in "[a-zA-Z0-9_.-]{1,24}", n in any::<u64>()) {
        let s = ConnId(n).display(&node).to_string();
        prop_assert_eq!(ConnId::parse(&s), Some((node.as_str(), ConnId(n))));
    }

    /// Any text payload survives the publication envelope: `data` is the payload,
    /// `channel` the channel, and the frame header is right.
    #[test]
    fn text_envelope_json_round_trip(
        payload in any::<String>(),
        channel in proptest::option::of("[a-zA-Z0-9_.:@/=-]{1,128}"),
    ) {
        let frame = encode_publication(channel.as_deref(), &Payload::Text(payload.clone()));
        prop_assert_eq!(frame[0], 0x81);
        let (got, err) = read_in_pieces(&masked(&frame, [1, 2, 3, 4], true, None), &[], 1 << 20);
        prop_assert_eq!(err, None);
        let Got::Text(json) = &got[0] else { panic!("{got:?}") };
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        prop_assert_eq!(&v["type"], "pub");
        prop_assert_eq!(v["data"].as_str(), Some(payload.as_str()));
        prop_assert_eq!(v.get("channel").and_then(|c| c.as_str()), channel.as_deref());
    }

    /// Binary publications keep their bytes after the channel prefix.
    #[test]
    fn binary_envelope_round_trip(
        payload in proptest::collection::vec(any::<u8>(), 0..2000),
        channel in proptest::option::of("[a-z0-9]{1,128}"),
    ) {
        let frame = encode_publication(channel.as_deref(), &Payload::Binary(payload.clone().into()));
        let (got, _) = read_in_pieces(&masked(&frame, [9, 8, 7, 6], true, None), &[], 1 << 20);
        let Got::Binary(body) = &got[0] else { panic!("{got:?}") };
        let ch = channel.unwrap_or_default();
        prop_assert_eq!(body[0] as usize, ch.len());
        prop_assert_eq!(&body[1..1 + ch.len()], ch.as_bytes());
        prop_assert_eq!(&body[1 + ch.len()..], &payload[..]);
    }
}
