//! Statuses that need a hub in a particular state, which a whole gateway cannot be
//! put in on demand: a hub whose shards are not running (publications stay in flight)
//! and a hub that is closing.

use std::time::Duration;

use pushgate_grpc::pb::{self, pushgate_client::PushgateClient};
use pushgate_grpc::{GrpcConfig, GrpcServer};
use pushgate_hub::{CloseReason, Hub, HubConfig};
use tokio::net::TcpListener;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(10);

async fn serve(
    hub: Hub,
    config: GrpcConfig,
) -> (GrpcServer, PushgateClient<tonic::transport::Channel>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = GrpcServer::start(
        listener,
        pushgate_broker::Broker::in_process(hub, std::time::Duration::from_secs(60)),
        config,
    )
    .await
    .unwrap();
    let client = tokio::time::timeout(
        WAIT,
        PushgateClient::connect(format!("http://{}", server.local_addr())),
    )
    .await
    .unwrap()
    .unwrap();
    (server, client)
}

fn to_all(data: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        publication: Some(pb::Publication {
            target: Some(pb::Target {
                kind: Some(pb::target::Kind::All(true)),
            }),
            payload: Some(pb::publication::Payload::Text(data.into())),
            exclude: String::new(),
        }),
    }
}

#[tokio::test]
async fn publications_beyond_the_in_flight_limit_get_resource_exhausted() {
    // Shards that never run: an accepted publication stays in flight.
    let hub = Hub::new(HubConfig {
        shards: 1,
        ..HubConfig::default()
    });
    let (server, client) = serve(
        hub.clone(),
        GrpcConfig {
            max_in_flight: 1,
            ..GrpcConfig::default()
        },
    )
    .await;
    let mut first = client.clone();
    let stuck = tokio::spawn(async move { first.publish(to_all("first")).await });
    // Wait (bounded) until the first publication is in flight.
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.pending_publications() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first publication never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let e = client.clone().publish(to_all("second")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("overloaded"), "{}", e.message());
    stuck.abort();
    server.stop(WAIT).await;
}

#[tokio::test]
async fn a_closing_hub_answers_unavailable_per_call_and_per_stream_item() {
    let hub = Hub::new(HubConfig {
        shards: 1,
        ..HubConfig::default()
    });
    hub.close_all(CloseReason::Shutdown);
    let (server, mut client) = serve(hub, GrpcConfig::default()).await;
    let e = client.publish(to_all("late")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    let req = pb::PublishStreamRequest {
        seq: 9,
        publication: to_all("late").publication,
        idempotency_key: "k".into(),
    };
    let mut acks = client
        .publish_stream(tokio_stream::iter([req.clone(), req]))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let ack = tokio::time::timeout(WAIT, acks.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(ack.seq, 9);
        let Some(pb::publish_stream_reply::Result::Error(e)) = ack.result else {
            panic!("{ack:?}")
        };
        assert_eq!(e.code, Code::Unavailable as i32);
        assert!(!ack.duplicate, "a refused attempt does not hold its key");
    }
    assert!(tokio::time::timeout(WAIT, acks.message())
        .await
        .unwrap()
        .unwrap()
        .is_none());
    server.stop(WAIT).await;
}
