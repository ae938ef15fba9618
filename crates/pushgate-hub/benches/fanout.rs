//! Micro-benchmark of the fan-out push: one publication to every connection of a
//! one-shard hub (frame encoded once, a refcount clone into each queue), then every
//! queue drained as the writers would. `cargo bench -p pushgate-hub`; the cost per
//! delivery is the time divided by the connection count (`items`).

use std::collections::VecDeque;
use std::task::{Context, Poll};

use divan::counter::ItemsCount;
use divan::Bencher;
use pushgate_hub::{ConnHandle, Hub, HubConfig, Outgoing, Publication, Target};
use pushgate_protocol::Payload;

fn main() {
    divan::main();
}

/// A one-shard hub on a current-thread runtime, with `conns` connections.
fn setup(conns: usize) -> (tokio::runtime::Runtime, Hub, Vec<ConnHandle>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hub = Hub::new(HubConfig {
        shards: 1,
        ..HubConfig::default()
    });
    let handles = rt.block_on(async {
        tokio::spawn(hub.shards()[0].clone().run());
        (0..conns)
            .map(|_| {
                let (id, shard) = hub.next_conn();
                shard.register(id, None)
            })
            .collect::<Vec<_>>()
    });
    (rt, hub, handles)
}

/// Takes what a writer would take now, so queues never fill.
fn drain(handles: &[ConnHandle], out: &mut VecDeque<bytes::Bytes>) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for h in handles {
        while let Poll::Ready(Outgoing::Frames) = h.poll_outgoing(&mut cx, out, true) {
            out.clear();
        }
    }
}

#[divan::bench(args = [100, 1000, 10_000])]
fn publish_to_all(bencher: Bencher, conns: usize) {
    let (rt, hub, handles) = setup(conns);
    let payload = Payload::Text("x".repeat(100));
    let mut out = VecDeque::new();
    bencher.counter(ItemsCount::new(conns)).bench_local(|| {
        let report = rt.block_on(hub.publish(
            Publication {
                target: Target::All,
                payload: payload.clone(),
                exclude: None,
            },
            "bench",
        ));
        assert_eq!(report.map(|r| r.enqueued).ok(), Some(conns as u64));
        drain(&handles, &mut out);
    });
}
