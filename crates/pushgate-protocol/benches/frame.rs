//! Micro-benchmarks of the frame codec: a publication encoded once (the cost paid per
//! publication, whatever its fan-out) and a client frame parsed and unmasked (paid per
//! client message). `cargo bench -p pushgate-protocol`; figures in docs/benchmarks.md.

use divan::counter::BytesCount;
use divan::Bencher;
use pushgate_protocol::frame::{encode_frame, FrameReader, OpCode, Step};
use pushgate_protocol::{encode_publication, Payload};

fn main() {
    divan::main();
}

const SIZES: [usize; 3] = [100, 4096, 65536];

/// A server frame: header and payload, no masking.
#[divan::bench(args = SIZES)]
fn encode_server_frame(bencher: Bencher, len: usize) {
    let payload = vec![b'x'; len];
    bencher
        .counter(BytesCount::new(len))
        .bench(|| encode_frame(OpCode::Text, divan::black_box(&payload)));
}

/// A channel publication's JSON envelope and frame, as the hub encodes it once.
#[divan::bench(args = SIZES)]
fn encode_publication_envelope(bencher: Bencher, len: usize) {
    let payload = Payload::Text("x".repeat(len));
    bencher
        .counter(BytesCount::new(len))
        .bench(|| encode_publication(Some("news"), divan::black_box(&payload)));
}

/// A masked client frame parsed and unmasked in place.
#[divan::bench(args = SIZES)]
fn parse_client_frame(bencher: Bencher, len: usize) {
    let frame = pushgate_test_support::client_frame(true, 2, &vec![7u8; len]);
    bencher
        .counter(BytesCount::new(len))
        .with_inputs(|| frame.clone())
        .bench_local_refs(|buf| {
            let mut reader = FrameReader::new();
            match reader.next(buf, 1 << 20) {
                Ok(Step::Message(n, _)) => n,
                other => panic!("{other:?}"),
            }
        });
}
