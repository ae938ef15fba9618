//! Bench payload: a marker, the sequence number and the send time, padded to
//! the requested size.
//!
//! `PGB1:<seq, 10 digits>:<send ns since UNIX epoch, 20 digits>:xxxx…`
//!
//! Plain ASCII with nothing that needs JSON escaping, so the receiver finds it
//! unchanged both in raw frames (peers) and inside pushgate's JSON envelope
//! `{"type":"pub","data":"PGB1:…"}` by scanning for the marker.

pub const MARKER: &[u8] = b"PGB1:";
const SEQ_DIGITS: usize = 10;
const TS_DIGITS: usize = 20;
/// Shortest payload that still carries marker, seq and timestamp.
pub const MIN_SIZE: usize = MARKER.len() + SEQ_DIGITS + 1 + TS_DIGITS + 1;

/// Pad with JSON records instead of `x` (`run --payload json`, the compression
/// scenario): a run-wide mode of the coordinator, the only process that encodes
/// payloads, set once before publishing starts.
static JSON_PADDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_json_padding(on: bool) {
    JSON_PADDING.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub fn encode(seq: u64, send_ns: u64, size: usize) -> Vec<u8> {
    let mut p = format!("PGB1:{seq:010}:{send_ns:020}:").into_bytes();
    debug_assert_eq!(p.len(), MIN_SIZE);
    if p.len() < size {
        if JSON_PADDING.load(std::sync::atomic::Ordering::Relaxed) {
            json_records(&mut p, seq, size);
        }
        p.resize(size, b'x');
    }
    p
}

/// Appends market-data-like JSON records (varying symbols, prices, volumes,
/// times drawn from `seq`) up to `size` bytes: as compressible as real feeds,
/// unlike a run of `x`. Escaped in pushgate's envelope (`\"`), so a frame is
/// longer than `size`; the receiver only needs the marker, seq and timestamp.
fn json_records(p: &mut Vec<u8>, seq: u64, size: usize) {
    use std::io::Write;
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    p.push(b'[');
    while p.len() < size {
        let (a, b, c, d) = (
            next() % 500,
            next() % 1000,
            next() % 100_000,
            next() % 1_000_000,
        );
        let _ = write!(
            p,
            "{{\"sym\":\"S{a:03}\",\"bid\":{}.{b:03},\"ask\":{}.{:03},\"vol\":{c},\"ts\":{}}},",
            100 + a,
            100 + a,
            (b + 125) % 1000,
            1_700_000_000_000u64 + d
        );
    }
    p.truncate(size);
}

#[cfg(test)]
/// Find the first payload in a received message and return `(seq, send_ns)`.
pub fn decode(msg: &[u8]) -> Option<(u64, u64)> {
    let mut out = None;
    let mut hint = 0;
    for_each(msg, 0, &mut hint, |seq, ts| {
        out = out.or(Some((seq, ts)));
    });
    out
}

/// Call `f(seq, send_ns)` for every payload in a message; returns how many.
///
/// This is the receive hot path, so it avoids scanning where it can:
/// - the first marker is tried at `*hint`, the offset where the previous
///   message had it (0 for raw peers, 22 inside pushgate's
///   `{"type":"pub","data":"…"}`), and only searched for on a miss;
/// - after a payload, `size` (every payload has this length; 0 = unknown)
///   skips its padding, so a message with one payload costs no scan at all.
///
/// Some servers batch queued messages into one frame (gorilla's chat hub
/// joins them with '\n'), hence the loop.
#[inline]
pub fn for_each(msg: &[u8], size: usize, hint: &mut usize, mut f: impl FnMut(u64, u64)) -> u64 {
    let mut n = 0;
    let mut pos = match msg.get(*hint..*hint + MARKER.len()) {
        Some(m) if m == MARKER => *hint,
        _ => match find(msg, MARKER) {
            Some(i) => {
                *hint = i;
                i
            }
            None => return 0,
        },
    };
    loop {
        let fields = pos + MARKER.len();
        match parse_fields(&msg[fields..]) {
            Some((seq, ts)) => {
                f(seq, ts);
                n += 1;
                pos = (pos + size).max(fields + SEQ_DIGITS + 1 + TS_DIGITS);
            }
            None => pos = fields,
        }
        if msg.len().saturating_sub(pos) < MIN_SIZE {
            return n;
        }
        match find(&msg[pos..], MARKER) {
            Some(i) => pos += i,
            None => return n,
        }
    }
}

#[inline]
fn parse_fields(after_marker: &[u8]) -> Option<(u64, u64)> {
    let rest: &[u8; SEQ_DIGITS + 1 + TS_DIGITS] = after_marker
        .get(..SEQ_DIGITS + 1 + TS_DIGITS)?
        .try_into()
        .ok()?;
    if rest[SEQ_DIGITS] != b':' {
        return None;
    }
    // seq: 2 + 8 digits; ts: 4 + 8 + 8 digits.
    let seq = parse_small(&rest[..2])? * 100_000_000 + parse8(&rest[2..10])?;
    let ts = &rest[SEQ_DIGITS + 1..];
    // 20 digits can exceed u64: the last step is checked.
    let hi = parse4(&ts[..4])? * 100_000_000 + parse8(&ts[4..12])?;
    let ts = hi
        .checked_mul(100_000_000)?
        .checked_add(parse8(&ts[12..20])?)?;
    Some((seq, ts))
}

fn parse_small(d: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    Some(v)
}

/// Four ASCII digits at once (SWAR, as [`parse8`]).
#[inline]
fn parse4(d: &[u8]) -> Option<u64> {
    let v = u32::from_le_bytes(d.try_into().ok()?).wrapping_sub(0x3030_3030);
    if (v | v.wrapping_add(0x0606_0606)) & 0xF0F0_F0F0 != 0 {
        return None;
    }
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF;
    Some(((v.wrapping_mul(100) + (v >> 16)) & 0xFFFF) as u64)
}

/// Eight ASCII digits at once (SWAR): a few multiplies instead of eight
/// dependent multiply-adds. None if any byte is not a digit.
#[inline]
fn parse8(d: &[u8]) -> Option<u64> {
    let v = u64::from_le_bytes(d.try_into().ok()?);
    let v = v.wrapping_sub(0x3030_3030_3030_3030);
    // A byte below '0' borrows (high nibble set); above '9' overflows the
    // low nibble once 6 is added.
    if (v | v.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0 != 0 {
        return None;
    }
    // Combine neighbours: pairs, then quads, then the two halves (first
    // digit is the lowest byte, little endian).
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF)
}

/// Naive substring search: it only runs when the marker is not at the hinted
/// offset or between batched payloads, where it is a few bytes away.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let last_start = hay.len().checked_sub(needle.len())?;
    (0..=last_start).find(|&i| hay[i] == first && &hay[i..i + needle.len()] == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_raw() {
        let p = encode(42, 1_700_000_000_123_456_789, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(decode(&p), Some((42, 1_700_000_000_123_456_789)));
    }

    #[test]
    fn small_size_keeps_fields() {
        let p = encode(7, 5, 1);
        assert_eq!(p.len(), MIN_SIZE);
        assert_eq!(decode(&p), Some((7, 5)));
    }

    #[test]
    fn finds_payload_in_envelope() {
        let p = encode(3, 99, 64);
        let env = format!(
            r#"{{"type":"pub","channel":"c1","data":"{}"}}"#,
            std::str::from_utf8(&p).unwrap()
        );
        assert_eq!(decode(env.as_bytes()), Some((3, 99)));
    }

    #[test]
    fn finds_every_payload_in_a_batched_frame() {
        let mut batch = encode(1, 10, 60);
        batch.push(b'\n');
        batch.extend(encode(2, 20, 60));
        batch.extend(b"\nPGB1:junk\n");
        batch.extend(encode(3, 30, 37));
        for size in [0, 60] {
            let mut all = Vec::new();
            let mut hint = 0;
            let n = for_each(&batch, size, &mut hint, |s, t| all.push((s, t)));
            assert_eq!(all, vec![(1, 10), (2, 20), (3, 30)], "size {size}");
            assert_eq!(n, 3);
        }
    }

    #[test]
    fn hint_tracks_the_marker_offset() {
        let p = encode(5, 77, 100);
        let env = [br#"{"type":"pub","data":""#.as_slice(), &p, b"\"}"].concat();
        let mut hint = 0;
        let mut got = Vec::new();
        assert_eq!(for_each(&env, 100, &mut hint, |s, t| got.push((s, t))), 1);
        assert_eq!(hint, 22);
        assert_eq!(for_each(&env, 100, &mut hint, |s, t| got.push((s, t))), 1);
        // A raw payload misses the hint and is found by the scan.
        assert_eq!(for_each(&p, 100, &mut hint, |s, t| got.push((s, t))), 1);
        assert_eq!(got, vec![(5, 77); 3]);
        assert_eq!(hint, 0);
    }

    #[test]
    fn swar_digits() {
        assert_eq!(parse8(b"00000000"), Some(0));
        assert_eq!(parse8(b"12345678"), Some(12_345_678));
        assert_eq!(parse8(b"99999999"), Some(99_999_999));
        assert_eq!(parse8(b"1234567/"), None);
        assert_eq!(parse8(b"1234:678"), None);
        assert_eq!(parse8(b"1"), None);
        assert_eq!(parse4(b"0000"), Some(0));
        assert_eq!(parse4(b"1234"), Some(1234));
        assert_eq!(parse4(b"9999"), Some(9999));
        assert_eq!(parse4(b"12a4"), None);
        let p = encode(9_876_543_210, 18_446_744_073_709_551_615, 0);
        assert_eq!(decode(&p), Some((9_876_543_210, u64::MAX)));
        let over = b"PGB1:0000000001:99999999999999999999:";
        assert_eq!(decode(over), None);
    }

    #[test]
    fn ignores_other_frames() {
        assert_eq!(decode(br#"{"type":"connected","id":"abc"}"#), None);
        assert_eq!(decode(b"PGB1:12"), None);
        assert_eq!(decode(b"PGB1:000000000a:00000000000000000001:"), None);
        assert_eq!(decode(b""), None);
    }
}
