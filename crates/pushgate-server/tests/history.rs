//! Channel history on one node, through the real gateway: tokio-tungstenite clients
//! resume from their positions while publishing goes on; the HTTP and gRPC history
//! calls; what cannot be recovered is said so.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use pushgate_grpc::pb::{self, pushgate_client::PushgateClient};
use pushgate_server::config::HistoryConfig;
use pushgate_server::{Config, Gateway};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

fn history_config(size: usize) -> Config {
    Config {
        history: vec![HistoryConfig {
            channels: "chat:*".into(),
            size,
            ttl_ms: 600_000,
        }],
        ..config()
    }
}

/// Subscribes with options and returns the reply, which must come before any
/// publication of the channel (recovered ones follow it).
async fn subscribe_with(c: &mut Client, cmd: Value) -> Value {
    send_json(&mut c.ws, cmd).await;
    let m = next_json(&mut c.ws).await.unwrap();
    assert!(
        matches!(m["type"].as_str(), Some("subscribed" | "error")),
        "before the subscribe reply: {m}"
    );
    m
}

/// Reads publications until one carries `data`; returns (offset, data) of each.
async fn read_until(c: &mut Client, data: &str) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    loop {
        let m = next_json(&mut c.ws).await.unwrap();
        assert_eq!(m["type"], "pub", "{m}");
        let d = m["data"].as_str().unwrap().to_owned();
        got.push((
            m["offset"]
                .as_u64()
                .expect("a history publication carries its offset"),
            d.clone(),
        ));
        if d == data {
            return got;
        }
    }
}

#[tokio::test]
async fn a_client_resumes_exactly_where_it_left_while_publishing_goes_on() {
    let gw = start(history_config(10_000)).await;
    let mut c = connect(&gw).await;
    let r = subscribe_with(
        &mut c,
        json!({"type": "subscribe", "channels": ["chat:1"], "id": 1}),
    )
    .await;
    let epoch = r["positions"]["chat:1"]["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(r["positions"]["chat:1"]["offset"], 0, "{r}");
    for i in 1..=5 {
        let rep = publish(&gw, "channel=chat:1", &format!("m{i}")).await;
        assert_eq!(rep["positions"]["chat:1"]["offset"], i, "{rep}");
        assert_eq!(rep["positions"]["chat:1"]["epoch"], epoch.as_str());
    }
    let got = read_until(&mut c, "m5").await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    drop(c);
    for i in 6..=55 {
        publish(&gw, "channel=chat:1", &format!("m{i}")).await;
    }
    // Publishing goes on while the client resumes.
    let http = gw.http_addr();
    let more = tokio::spawn(async move {
        for i in 56..=255 {
            let (status, _) = http_publish(http, &format!("m{i}")).await;
            assert_eq!(status, 200);
        }
    });
    let mut c = connect(&gw).await;
    let r = subscribe_with(
        &mut c,
        json!({"type": "subscribe", "channels": ["chat:1"], "since": {"chat:1": {"epoch": epoch, "offset": 5}}, "id": 2}),
    )
    .await;
    assert_eq!(r["recovered"], json!(["chat:1"]), "{r}");
    assert!(r.get("unrecovered").is_none(), "{r}");
    let got = read_until(&mut c, "m255").await;
    more.await.unwrap();
    let offsets: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        offsets,
        (6..=255).collect::<Vec<_>>(),
        "every offset once, in order"
    );
    assert!(got.iter().all(|(o, d)| *d == format!("m{o}")));
    gw.shutdown().await;
}

async fn http_publish(addr: std::net::SocketAddr, body: &str) -> (u16, String) {
    http(addr, "POST", "/publish?channel=chat:1", body.as_bytes()).await
}

#[tokio::test]
async fn what_cannot_be_recovered_is_said_so() {
    let gw = start(history_config(10)).await;
    let mut epoch = String::new();
    for i in 1..=30 {
        let rep = publish(&gw, "channel=chat:w", &format!("m{i}")).await;
        epoch = rep["positions"]["chat:w"]["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    // The gap fell out of the window (10 kept: 21..30).
    let mut c = connect(&gw).await;
    let r = subscribe_with(
        &mut c,
        json!({"type": "subscribe", "channels": ["chat:w"], "since": {"chat:w": {"epoch": epoch, "offset": 10}}}),
    )
    .await;
    assert_eq!(r["unrecovered"], json!(["chat:w"]), "{r}");
    assert_eq!(r["positions"]["chat:w"]["offset"], 30);
    expect_nothing_before(&gw, &mut [&mut c], "mark").await;
    // Just inside the window: recovered.
    let mut c = connect(&gw).await;
    let r = subscribe_with(
        &mut c,
        json!({"type": "subscribe", "channels": ["chat:w"], "since": {"chat:w": {"epoch": epoch, "offset": 20}}}),
    )
    .await;
    assert_eq!(r["recovered"], json!(["chat:w"]), "{r}");
    assert_eq!(read_until(&mut c, "m30").await.len(), 10);
    gw.shutdown().await;

    // A restarted memory-only node lost its history: a new epoch.
    let gw = start(history_config(10)).await;
    let mut c = connect(&gw).await;
    let r = subscribe_with(
        &mut c,
        json!({"type": "subscribe", "channels": ["chat:w"], "since": {"chat:w": {"epoch": epoch, "offset": 30}}}),
    )
    .await;
    assert_eq!(r["unrecovered"], json!(["chat:w"]), "{r}");
    assert_ne!(r["positions"]["chat:w"]["epoch"], epoch.as_str());
    gw.shutdown().await;
}

#[tokio::test]
async fn latest_binary_and_bad_requests() {
    let gw = start(history_config(100)).await;
    for i in 1..=3 {
        publish(&gw, "channel=chat:s", &format!("state{i}")).await;
    }
    let mut c = connect(&gw).await;
    let r = subscribe_with(
        &mut c,
        json!({"type": "subscribe", "channels": ["chat:s", "news"], "latest": true}),
    )
    .await;
    assert_eq!(r["positions"]["chat:s"]["offset"], 3, "{r}");
    assert!(
        r["positions"].get("news").is_none(),
        "no history, no position: {r}"
    );
    let m = next_json(&mut c.ws).await.unwrap();
    assert_eq!(
        (m["offset"].as_u64(), m["data"].as_str()),
        (Some(3), Some("state3")),
        "{m}"
    );
    // Binary on a history channel: 0xFF, channel, offset (u64 big-endian), payload.
    let (status, _) = http(
        gw.http_addr(),
        "POST",
        "/publish?channel=chat:s&binary=true",
        &[0, 1, 2],
    )
    .await;
    assert_eq!(status, 200);
    match next_msg(&mut c.ws).await.unwrap() {
        Message::Binary(b) => {
            let mut want = vec![0xFF, 6];
            want.extend_from_slice(b"chat:s");
            want.extend_from_slice(&4u64.to_be_bytes());
            want.extend_from_slice(&[0, 1, 2]);
            assert_eq!(&b[..], &want[..]);
        }
        other => panic!("{other:?}"),
    }
    // `since` naming a channel not subscribed is the client's mistake.
    let r = subscribe_with(
        &mut c,
        json!({"type": "subscribe", "channels": ["chat:s"], "since": {"chat:x": {"epoch": "e", "offset": 1}}, "id": 9}),
    )
    .await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str(), r["id"].as_u64()),
        (Some("error"), Some("bad_request"), Some(9)),
        "{r}"
    );
    c.ws.send(Message::text(
        r#"{"type":"subscribe","channels":["chat:s"],"since":{"chat:s":{"epoch":1}}}"#,
    ))
    .await
    .unwrap();
    let r = next_json(&mut c.ws).await.unwrap();
    assert_eq!(r["code"], "bad_json", "{r}");
    gw.shutdown().await;
}

#[tokio::test]
async fn history_over_http_and_grpc() {
    let gw = start(history_config(100)).await;
    for i in 1..=20 {
        publish(&gw, "channel=chat:h", &format!("h{i}")).await;
    }
    let (status, body) = http(
        gw.http_addr(),
        "GET",
        "/history?channel=chat:h&since=15&limit=3",
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["offset"], 20);
    assert_eq!(page["oldest"], 1);
    assert_eq!(
        page["publications"],
        json!([{"offset": 16, "data": "h16"}, {"offset": 17, "data": "h17"}, {"offset": 18, "data": "h18"}])
    );
    let (_, body) = http(
        gw.http_addr(),
        "GET",
        "/history?channel=chat:h&limit=2",
        b"",
    )
    .await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        page["publications"][1]["offset"], 20,
        "the newest without since"
    );
    for (q, want) in [
        ("channel=news", 404),
        ("channel=a%20b", 400),
        ("channel=chat:h&limit=5000", 400),
        ("", 400),
    ] {
        let (status, body) = http(gw.http_addr(), "GET", &format!("/history?{q}"), b"").await;
        assert_eq!(status, want, "{q}: {body}");
    }

    let mut g = grpc(&gw).await;
    let reply = g
        .publish(pb::PublishRequest {
            publication: Some(pb::Publication {
                target: Some(pb::Target {
                    kind: Some(pb::target::Kind::Channels(pb::Names {
                        names: vec!["chat:h".into(), "news".into()],
                    })),
                }),
                payload: Some(pb::publication::Payload::Text("h21".into())),
                exclude: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.positions.len(),
        1,
        "only history channels have a position"
    );
    assert_eq!(reply.positions["chat:h"].offset, 21);
    let page = g
        .history(pb::HistoryRequest {
            channel: "chat:h".into(),
            since: Some(19),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.offset, 21);
    assert_eq!(page.epoch, reply.positions["chat:h"].epoch);
    let offsets: Vec<u64> = page.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [20, 21]);
    let e = g
        .history(pb::HistoryRequest {
            channel: "news".into(),
            since: None,
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    gw.shutdown().await;
}

async fn grpc(gw: &Gateway) -> PushgateClient<tonic::transport::Channel> {
    tokio::time::timeout(
        Duration::from_secs(10),
        PushgateClient::connect(format!("http://{}", gw.grpc_addr())),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_reconnecting_at_once_all_recover() {
    const CLIENTS: usize = 1000;
    const MISSED: u64 = 100;
    let gw = start(history_config(1000)).await;
    let epoch = {
        let mut c = connect(&gw).await;
        let r = subscribe_with(&mut c, json!({"type": "subscribe", "channels": ["chat:m"]})).await;
        r["positions"]["chat:m"]["epoch"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // They were all at offset 0 when they lost their connections; 100 went by since.
    for i in 1..=MISSED {
        publish(&gw, "channel=chat:m", &format!("m{i}")).await;
    }
    let ws = gw.ws_addr();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let epoch = epoch.clone();
            tokio::spawn(async move {
                let (mut ws, _) = tokio::time::timeout(
                    Duration::from_secs(30),
                    tokio_tungstenite::connect_async(format!("ws://{ws}/ws")),
                )
                .await
                .expect("connect in time")
                .expect("upgrade");
                let hello = next_json(&mut ws).await.unwrap();
                assert_eq!(hello["type"], "connected");
                let since = json!({"chat:m": {"epoch": epoch, "offset": 0}});
                send_json(
                    &mut ws,
                    json!({"type": "subscribe", "channels": ["chat:m"], "since": since}),
                )
                .await;
                let r = next_json(&mut ws).await.unwrap();
                assert_eq!(r["recovered"], json!(["chat:m"]), "{r}");
                let mut offsets = Vec::new();
                while offsets.len() < MISSED as usize {
                    let m = next_json(&mut ws).await.unwrap();
                    offsets.push(m["offset"].as_u64().unwrap());
                }
                assert_eq!(offsets, (1..=MISSED).collect::<Vec<_>>());
                ws
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(CLIENTS);
    for t in tasks {
        conns.push(t.await.unwrap());
    }
    // Live publications follow the recovered ones on every connection.
    publish(&gw, "channel=chat:m", "live").await;
    for ws in conns.iter_mut() {
        let m = next_json(ws).await.unwrap();
        assert_eq!(
            (m["offset"].as_u64(), m["data"].as_str()),
            (Some(MISSED + 1), Some("live"))
        );
    }
    drop(conns);
    gw.shutdown().await;
}
