//! The gRPC ingress against a real gateway: the generated tonic client publishes,
//! tokio-tungstenite clients receive. Every wait is bounded (support::WAIT).

mod support;

use pushgate_grpc::pb::{self, pushgate_client::PushgateClient};
use pushgate_server::Gateway;
use support::*;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request};

async fn client(gw: &Gateway) -> PushgateClient<Channel> {
    tokio::time::timeout(
        WAIT,
        PushgateClient::connect(format!("http://{}", gw.grpc_addr())),
    )
    .await
    .expect("gRPC connect in time")
    .expect("gRPC connects")
}

fn target(kind: pb::target::Kind) -> Option<pb::Target> {
    Some(pb::Target { kind: Some(kind) })
}

fn names(v: &[&str]) -> pb::Names {
    pb::Names {
        names: v.iter().map(|s| s.to_string()).collect(),
    }
}

fn text_pub(kind: pb::target::Kind, data: &str) -> pb::Publication {
    pb::Publication {
        target: target(kind),
        payload: Some(pb::publication::Payload::Text(data.into())),
        exclude: String::new(),
    }
}

async fn publish(
    c: &mut PushgateClient<Channel>,
    p: pb::Publication,
) -> Result<pb::PublishReply, tonic::Status> {
    tokio::time::timeout(
        WAIT,
        c.publish(pb::PublishRequest {
            publication: Some(p),
        }),
    )
    .await
    .expect("publish answers in time")
    .map(|r| r.into_inner())
}

#[tokio::test]
async fn each_target_kind_delivers_exactly_once() {
    let gw = start(config()).await;
    let mut a = connect_as(&gw, Some("alice")).await;
    let mut b = connect_as(&gw, Some("bob")).await;
    let mut c = connect(&gw).await;
    subscribe(&mut a, &["news"]).await;
    subscribe(&mut c, &["news", "sport"]).await;
    let mut g = client(&gw).await;
    use pb::target::Kind;

    let r = publish(&mut g, text_pub(Kind::Channels(names(&["news"])), "n"))
        .await
        .unwrap();
    assert_eq!((r.enqueued, r.skipped, r.nodes_accepted), (2, 0, 1));
    assert_eq!(r.nodes.len(), 1);
    assert_eq!(r.nodes[0].node_id, "n1");
    expect_pub(&mut a.ws, Some("news"), "n").await;
    expect_pub(&mut c.ws, Some("news"), "n").await;

    let r = publish(&mut g, text_pub(Kind::Users(names(&["bob"])), "u"))
        .await
        .unwrap();
    assert_eq!(r.enqueued, 1);
    expect_pub(&mut b.ws, None, "u").await;

    let r = publish(&mut g, text_pub(Kind::Conns(names(&[&c.id, "n2-1"])), "c"))
        .await
        .unwrap();
    assert_eq!(
        r.enqueued, 1,
        "the id on another node is valid but not here"
    );
    expect_pub(&mut c.ws, None, "c").await;

    let mut all = text_pub(Kind::All(true), "everyone but b");
    all.exclude = b.id.clone();
    let r = publish(&mut g, all).await.unwrap();
    assert_eq!(r.enqueued, 2);
    expect_pub(&mut a.ws, None, "everyone but b").await;
    expect_pub(&mut c.ws, None, "everyone but b").await;

    let bin = pb::Publication {
        target: target(Kind::Channels(names(&["sport"]))),
        payload: Some(pb::publication::Payload::Binary(vec![0, 1, 2])),
        exclude: String::new(),
    };
    assert_eq!(publish(&mut g, bin).await.unwrap().enqueued, 1);
    let m = next_msg(&mut c.ws).await.unwrap();
    assert_eq!(m.into_data().to_vec(), b"\x05sport\x00\x01\x02");

    // Nothing else arrived anywhere: no duplicates, nothing to the excluded client.
    expect_nothing_before(&gw, &mut [&mut a, &mut b, &mut c], "marker").await;
    gw.shutdown().await;
}

fn stream_req(seq: u64, p: pb::Publication, key: &str) -> pb::PublishStreamRequest {
    pb::PublishStreamRequest {
        seq,
        publication: Some(p),
        idempotency_key: key.into(),
    }
}

#[tokio::test]
async fn streamed_publications_are_all_acked_in_order_and_all_delivered() {
    let gw = start(config()).await;
    let mut sub = connect(&gw).await;
    subscribe(&mut sub, &["feed"]).await;
    let mut g = client(&gw).await;
    use pb::target::Kind;

    const N: u64 = 2_000;
    let bad_seq = 777;
    let reqs: Vec<_> = (1..=N)
        .map(|seq| {
            let ch = if seq == bad_seq {
                "bad channel"
            } else {
                "feed"
            };
            stream_req(
                seq,
                text_pub(Kind::Channels(names(&[ch])), &seq.to_string()),
                "",
            )
        })
        .collect();
    let mut acks = g
        .publish_stream(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut seqs = Vec::new();
    while let Some(ack) = tokio::time::timeout(WAIT, acks.next())
        .await
        .expect("ack in time")
    {
        let ack = ack.expect("the stream does not fail");
        match ack.result.expect("every ack has a result") {
            pb::publish_stream_reply::Result::Ok(r) => {
                assert_eq!(r.enqueued, 1, "seq {}", ack.seq);
                assert!(!ack.duplicate);
            }
            pb::publish_stream_reply::Result::Error(e) => {
                assert_eq!(ack.seq, bad_seq, "{e:?}");
                assert_eq!(e.code, Code::InvalidArgument as i32);
                assert!(e.message.contains("bad channel"), "{}", e.message);
            }
        }
        seqs.push(ack.seq);
    }
    assert_eq!(
        seqs,
        (1..=N).collect::<Vec<_>>(),
        "one ack per item, in order"
    );
    for seq in (1..=N).filter(|s| *s != bad_seq) {
        expect_pub(&mut sub.ws, Some("feed"), &seq.to_string()).await;
    }
    expect_nothing_before(&gw, &mut [&mut sub], "end").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn an_idempotency_key_deduplicates_retries_across_streams() {
    let gw = start(config()).await;
    let mut sub = connect(&gw).await;
    subscribe(&mut sub, &["once"]).await;
    let mut g = client(&gw).await;
    let p = || text_pub(pb::target::Kind::Channels(names(&["once"])), "hi");
    let mut first = Vec::new();
    for _ in 0..2 {
        let reqs = vec![stream_req(1, p(), "key-1"), stream_req(2, p(), "key-1")];
        let mut acks = g
            .publish_stream(tokio_stream::iter(reqs))
            .await
            .unwrap()
            .into_inner();
        while let Some(ack) = tokio::time::timeout(WAIT, acks.next()).await.unwrap() {
            first.push(ack.unwrap());
        }
    }
    let dup: Vec<bool> = first.iter().map(|a| a.duplicate).collect();
    assert_eq!(dup, [false, true, true, true]);
    for a in &first {
        let Some(pb::publish_stream_reply::Result::Ok(r)) = &a.result else {
            panic!("{a:?}")
        };
        assert_eq!(r.enqueued, 1, "a duplicate repeats the first result");
    }
    expect_pub(&mut sub.ws, Some("once"), "hi").await;
    expect_nothing_before(&gw, &mut [&mut sub], "end").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn the_bearer_token_is_enforced_on_every_call_but_not_on_health() {
    let gw = start(pushgate_server::Config {
        grpc_token: "s3cret".into(),
        ..config()
    })
    .await;
    let mut g = client(&gw).await;
    let p = || pb::PublishRequest {
        publication: Some(text_pub(pb::target::Kind::All(true), "x")),
    };
    let with = |token: Option<&str>| {
        let mut r = Request::new(p());
        if let Some(t) = token {
            r.metadata_mut().insert("authorization", t.parse().unwrap());
        }
        r
    };
    for bad in [None, Some("Bearer wrong"), Some("s3cret")] {
        let e = g.publish(with(bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{bad:?}: {e:?}");
    }
    let e = g.stats(pb::StatsRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = g
        .publish_stream(tokio_stream::iter(Vec::<pb::PublishStreamRequest>::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(g.publish(with(Some("Bearer s3cret"))).await.is_ok());
    // Refused calls are counted under their method like any other.
    let refused = metric(
        &gw,
        "pushgate_grpc_requests_total",
        "method=\"Publish\",code=\"UNAUTHENTICATED\"",
    )
    .await;
    assert!(refused >= 3.0, "{refused}");

    let mut health = tonic_health::pb::health_client::HealthClient::new(
        Channel::from_shared(format!("http://{}", gw.grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let st = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "pushgate.v1.Pushgate".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        st.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn refusals_get_invalid_argument_with_a_message_that_says_why() {
    let gw = start(pushgate_server::Config {
        max_payload_bytes: 1024,
        ..config()
    })
    .await;
    let mut g = client(&gw).await;
    use pb::target::Kind;
    let x = |kind| text_pub(kind, "x");
    let cases: Vec<(pb::Publication, &str)> = vec![
        (x(Kind::Channels(names(&["a b"]))), "channel \"a b\""),
        (x(Kind::Channels(names(&[]))), "no target"),
        (x(Kind::All(false)), "no target"),
        (x(Kind::Conns(names(&[]))), "no target"),
        (
            x(Kind::Conns(names(&["garbage"]))),
            "malformed connection id",
        ),
        (x(Kind::Users(names(&[""]))), "user must not be empty"),
        (
            pb::Publication {
                target: None,
                ..x(Kind::All(true))
            },
            "no target",
        ),
        (
            pb::Publication {
                payload: None,
                ..x(Kind::All(true))
            },
            "payload is missing",
        ),
        (
            text_pub(Kind::All(true), &"x".repeat(1025)),
            "exceeds the limit of 1024 bytes",
        ),
        (
            x(Kind::Channels(pb::Names {
                names: (0..101).map(|i| format!("c{i}")).collect(),
            })),
            "101 channel targets in one publication; at most 100",
        ),
        (
            x(Kind::Users(pb::Names {
                names: (0..1001).map(|i| format!("u{i}")).collect(),
            })),
            "1001 user targets in one publication; at most 1000",
        ),
        (
            x(Kind::Conns(pb::Names {
                names: (0..1001).map(|i| format!("n1-{i}")).collect(),
            })),
            "1001 conn targets in one publication; at most 1000",
        ),
        (x(Kind::Users(names(&["a\0b"]))), "user id contains '\\0'"),
        (
            x(Kind::Users(pb::Names {
                names: vec!["u".repeat(100_000)],
            })),
            "longer than 128 bytes",
        ),
    ];
    for (p, want) in cases {
        let e = publish(&mut g, p.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{p:?}: {e:?}");
        assert!(
            e.message().contains(want),
            "{p:?}: {:?} lacks {want:?}",
            e.message()
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn over_long_idempotency_keys_and_over_wide_calls_are_refused() {
    let gw = start(config()).await;
    let mut g = client(&gw).await;
    let p = || text_pub(pb::target::Kind::All(true), "x");
    let before = metric(
        &gw,
        "pushgate_publications_refused_total",
        "reason=\"idempotency_key\"",
    )
    .await;
    let long = "k".repeat(257);
    let reqs = vec![
        stream_req(1, p(), &long),
        stream_req(2, p(), &"k".repeat(256)),
    ];
    let mut acks = g
        .publish_stream(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(WAIT, acks.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(pb::publish_stream_reply::Result::Error(e)) = &first.result else {
        panic!("{first:?}")
    };
    assert_eq!(e.code, Code::InvalidArgument as i32, "{e:?}");
    assert!(
        e.message
            .contains("idempotency key of 257 bytes; at most 256"),
        "{e:?}"
    );
    let second = tokio::time::timeout(WAIT, acks.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(second.result, Some(pb::publish_stream_reply::Result::Ok(_))),
        "a 256-byte key is fine: {second:?}"
    );
    let after = metric(
        &gw,
        "pushgate_publications_refused_total",
        "reason=\"idempotency_key\"",
    )
    .await;
    assert!(after > before, "{before} -> {after}");
    // Admin calls: as wide as a publication may be, user ids checked the same way.
    let e = g
        .presence(pb::PresenceRequest {
            users: (0..1001).map(|i| format!("u{i}")).collect(),
            channels: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("1001 users"), "{e:?}");
    let e = g
        .disconnect(pb::DisconnectRequest {
            who: Some(pb::disconnect_request::Who::User("a b".into())),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("user id contains ' '"), "{e:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn operators_subscribe_inspect_and_disconnect_server_side() {
    let gw = start(config()).await;
    let mut a1 = connect_as(&gw, Some("alice")).await;
    let mut a2 = connect_as(&gw, Some("alice")).await;
    let mut b = connect_as(&gw, Some("bob")).await;
    let mut g = client(&gw).await;
    let sub = |conn: Option<&str>, user: Option<&str>, chans: &[&str]| pb::SubscribeRequest {
        who: match (conn, user) {
            (Some(c), _) => Some(pb::subscribe_request::Who::Conn(c.into())),
            (_, Some(u)) => Some(pb::subscribe_request::Who::User(u.into())),
            _ => None,
        },
        channels: chans.iter().map(|s| s.to_string()).collect(),
    };

    let r = g
        .subscribe(sub(None, Some("alice"), &["room"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.conns, r.refused), (2, 0));
    let r = g
        .subscribe(sub(Some(&b.id), None, &["room"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.conns, 1);
    for bad in [
        sub(None, None, &["room"]),
        sub(None, Some("alice"), &[]),
        sub(None, Some("alice"), &["no spaces"]),
    ] {
        let e = g.subscribe(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }
    let r = publish(
        &mut g,
        text_pub(pb::target::Kind::Channels(names(&["room"])), "hey"),
    )
    .await
    .unwrap();
    assert_eq!(r.enqueued, 3);
    for c in [&mut a1, &mut a2, &mut b] {
        expect_pub(&mut c.ws, Some("room"), "hey").await;
    }

    let p = g
        .presence(pb::PresenceRequest {
            users: vec!["alice".into(), "nobody".into()],
            channels: vec!["room".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut alice = vec![a1.id.clone(), a2.id.clone()];
    alice.sort_by_key(|id| id.rsplit('-').next().unwrap().parse::<u64>().unwrap());
    assert_eq!(p.users[0].conns, alice);
    assert!(p.users[1].conns.is_empty());
    assert_eq!(p.channels[0].subscribers, 3);
    let s = g.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert_eq!((s.connections, s.channels, s.subscriptions), (3, 1, 3));
    assert_eq!(s.per_shard.iter().sum::<u64>(), 3);

    let r = g
        .unsubscribe(sub(None, Some("alice"), &["room"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.conns, 2);
    let r = publish(
        &mut g,
        text_pub(pb::target::Kind::Channels(names(&["room"])), "only b"),
    )
    .await
    .unwrap();
    assert_eq!(r.enqueued, 1);
    expect_pub(&mut b.ws, Some("room"), "only b").await;
    expect_nothing_before(&gw, &mut [&mut a1, &mut a2, &mut b], "m").await;

    let disc = |who, code| pb::DisconnectRequest {
        who: Some(who),
        code,
        reason: "test".into(),
    };
    let e = g
        .disconnect(disc(
            pb::disconnect_request::Who::User("alice".into()),
            1006,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("4000-4999"), "{}", e.message());
    let r = g
        .disconnect(disc(
            pb::disconnect_request::Who::User("alice".into()),
            4100,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.disconnected, 2);
    for c in [&mut a1, &mut a2] {
        match next_msg(&mut c.ws).await.unwrap() {
            tokio_tungstenite::tungstenite::Message::Close(Some(f)) => {
                assert_eq!(u16::from(f.code), 4100);
                assert_eq!(f.reason.as_str(), "test");
            }
            other => panic!("expected close 4100, got {other:?}"),
        }
    }
    let r = g
        .disconnect(disc(pb::disconnect_request::Who::Conn(b.id.clone()), 4002))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.disconnected, 1);
    wait_for_stats(&gw, "everyone disconnected", |s| s.connections == 0).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn health_turns_not_serving_when_shutdown_begins_and_reflection_lists_the_services() {
    let gw = start(pushgate_server::Config {
        drain_window_ms: 500,
        ..config()
    })
    .await;
    let channel = Channel::from_shared(format!("http://{}", gw.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut refl = ServerReflectionClient::new(channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        resp.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"pushgate.v1.Pushgate"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    // A connected client keeps the drain busy for a while, so the check below runs
    // while shutdown is in progress.
    let _held = connect(&gw).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    use tonic_health::pb::health_check_response::ServingStatus;
    let first = tokio::time::timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let stopping = tokio::spawn(gw.shutdown());
    let next = tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("a status change in time");
    let next = next
        .expect("the watch stream goes on")
        .expect("not an error");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_open_stream_is_told_when_the_node_stops() {
    let gw = start(config()).await;
    let mut g = client(&gw).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = g
        .publish_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(stream_req(
        1,
        text_pub(pb::target::Kind::All(true), "x"),
        "",
    ))
    .await
    .unwrap();
    let ack = tokio::time::timeout(WAIT, acks.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ack.seq, 1);
    tokio::time::timeout(WAIT, gw.shutdown())
        .await
        .expect("shutdown does not wait for the open stream");
    let end = tokio::time::timeout(WAIT, acks.next()).await.unwrap();
    match end {
        Some(Err(s)) => assert_eq!(s.code(), Code::Unavailable, "{s:?}"),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    drop(tx);
}

#[tokio::test]
async fn calls_are_counted_by_method_and_status() {
    let gw = start(config()).await;
    let mut g = client(&gw).await;
    g.stats(pb::StatsRequest {}).await.unwrap();
    let metrics = http(gw.http_addr(), "GET", "/metrics", b"").await.1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(r#"pushgate_grpc_requests_total{method="Stats",code="OK"}"#)),
        "{metrics}"
    );
    assert!(
        metrics.contains("pushgate_grpc_request_duration_seconds_bucket"),
        "{metrics}"
    );
    gw.shutdown().await;
}
