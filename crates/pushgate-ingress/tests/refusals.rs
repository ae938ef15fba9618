//! HTTP answers that need a hub in a particular state, which a whole gateway cannot be
//! put in on demand (as the gRPC crate's `tests/overload.rs` does for its port): a hub
//! whose shards are not running (publications stay in flight) and a hub that is
//! closing. Both ports answer these through the same `Refusal` classes.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use pushgate_broker::Broker;
use pushgate_hub::{CloseReason, Hub, HubConfig};
use pushgate_ingress::{serve_http, HttpLimits, HttpState, Refusal};
use pushgate_test_support::http::{request, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

async fn serve(hub: Hub, limits: HttpLimits) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(HttpState {
        broker: Broker::in_process(hub, Duration::from_secs(60)),
        ready: Arc::new(AtomicBool::new(true)),
        render_metrics: Box::new(String::new),
        limits,
        token: String::new(),
        mounts: Vec::new(),
    });
    let stop = CancellationToken::new();
    tokio::spawn(serve_http(listener, state, stop.clone()));
    (addr, stop)
}

/// One `POST path` with `body`, on a blocking thread (the support client blocks).
async fn post(addr: SocketAddr, path: &'static str, body: &'static str) -> Response {
    tokio::task::spawn_blocking(move || request(addr, "POST", path, body.as_bytes()))
        .await
        .unwrap()
        .expect("the gateway answers")
}

#[tokio::test]
async fn publications_beyond_the_in_flight_limit_get_429_with_retry_after() {
    // Shards that never run: an accepted publication stays in flight.
    let hub = Hub::new(HubConfig {
        shards: 1,
        ..HubConfig::default()
    });
    let (addr, stop) = serve(
        hub.clone(),
        HttpLimits {
            max_in_flight: 1,
            ..HttpLimits::default()
        },
    )
    .await;
    // The first publication, whose answer never comes; its connection stays open.
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"POST /publish?all=true HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.pending_publications() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first publication never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = post(addr, "/publish?all=true", "second").await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.status, Refusal::Overloaded.http_status().as_u16());
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    assert!(r.body.contains("overloaded"), "{}", r.body);
    // A request that is refused before it is a publication takes no slot.
    let r = post(addr, "/publish", "no target").await;
    assert_eq!(r.status, 400, "{r:?}");
    drop(first);
    stop.cancel();
}

#[tokio::test]
async fn a_closing_hub_answers_503_and_too_large_answers_413() {
    let hub = Hub::new(HubConfig {
        shards: 1,
        max_payload: 8,
        ..HubConfig::default()
    });
    for s in hub.shards() {
        tokio::spawn(s.clone().run());
    }
    let (addr, stop) = serve(hub.clone(), HttpLimits::default()).await;
    let r = post(addr, "/publish?all=true", "ok").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = post(addr, "/publish?all=true", "nine bytes").await;
    assert_eq!(r.status, 413, "{r:?}");
    hub.close_all(CloseReason::Shutdown);
    let r = post(addr, "/publish?all=true", "late").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("shutting down"), "{}", r.body);
    stop.cancel();
}

/// A mount that answers 200 with the body it was handed, under `/apps/`.
struct Echo;

impl pushgate_ingress::Mount for Echo {
    fn serves(&self, path: &str) -> bool {
        path.starts_with("/apps/")
    }
    fn max_body(&self) -> usize {
        8
    }
    fn label(&self) -> &'static str {
        "echo"
    }
    fn call<'a>(
        &'a self,
        _: &'a hyper::http::request::Parts,
        body: bytes::Bytes,
    ) -> pushgate_ingress::MountFuture<'a> {
        Box::pin(async move { hyper::Response::new(http_body_util::Full::new(body)) })
    }
}

#[tokio::test]
async fn a_mount_gets_its_paths_without_the_bearer_token_and_within_its_body_limit() {
    let hub = Hub::new(HubConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(HttpState {
        broker: Broker::in_process(hub, Duration::from_secs(60)),
        ready: Arc::new(AtomicBool::new(true)),
        render_metrics: Box::new(String::new),
        limits: HttpLimits::default(),
        token: "secret-token".into(),
        mounts: vec![Arc::new(Echo)],
    });
    let stop = CancellationToken::new();
    tokio::spawn(serve_http(listener, state, stop.clone()));
    let r = post(addr, "/apps/1/events", "hello").await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello"), "{r:?}");
    let r = post(addr, "/apps/1/events", "more than 8 bytes").await;
    assert_eq!(r.status, 413, "{r:?}");
    let r = post(addr, "/publish?all=true", "x").await;
    assert_eq!(
        r.status, 401,
        "pushgate's own routes still need the token: {r:?}"
    );
    stop.cancel();
}
