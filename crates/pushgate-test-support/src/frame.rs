//! Client frames are masked (RFC 6455 §5.3): a 4-byte key follows the length, and
//! the payload is XORed with it.

/// The key [`client_frame`] masks with.
pub const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A masked client frame; `fin` false for a fragment that more frames continue.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    masked(fin, opcode, payload, KEY)
}

/// A client frame masked with `key`.
pub fn masked(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_length_class_has_its_header_and_the_payload_unmasks() {
        for (len, header) in [(0, 6), (125, 6), (126, 8), (65535, 8), (65536, 14)] {
            let payload = vec![0xAB; len];
            let f = client_frame(true, 2, &payload);
            assert_eq!(f.len(), header + len);
            assert_eq!(f[0], 0x82);
            let body: Vec<u8> = f[header..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ KEY[i % 4])
                .collect();
            assert_eq!(body, payload);
        }
        assert_eq!(client_frame(false, 1, b"x")[0], 0x01);
    }
}
