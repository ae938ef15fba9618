//! Presence on one node, through the real gateway: tokio-tungstenite clients join and
//! leave a presence channel; watchers get `join` / `leave`; the `presence` command, the
//! internal HTTP `GET /presence` and the gRPC `Presence`, `PresenceStats` and `Online`
//! calls agree; a token's `info` claim is shown.

mod support;

use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
use pushgate_grpc::pb::{self, pushgate_client::PushgateClient};
use pushgate_server::config::PresenceConfig;
use pushgate_server::{Config, Gateway};
use serde_json::{json, Value};
use support::*;

fn presence_config() -> Config {
    Config {
        presence: vec![PresenceConfig {
            channels: "room:*".into(),
        }],
        ..config()
    }
}

async fn grpc(gw: &Gateway) -> PushgateClient<tonic::transport::Channel> {
    PushgateClient::connect(format!("http://{}", gw.grpc_addr()))
        .await
        .unwrap()
}

/// Sends a command and returns the next message, which must be its answer.
async fn ask(c: &mut Client, cmd: Value) -> Value {
    send_json(&mut c.ws, cmd).await;
    next_json(&mut c.ws).await.unwrap()
}

/// The next message, which must be a presence event of `kind` about `conn`.
async fn expect_event(c: &mut Client, kind: &str, conn: &str, user: Option<&str>) {
    let m = next_json(&mut c.ws).await.unwrap();
    assert_eq!(
        (
            m["type"].as_str(),
            m["channel"].as_str(),
            m["conn"].as_str()
        ),
        (Some(kind), Some("room:1"), Some(conn)),
        "{m}"
    );
    assert_eq!(m["user"].as_str(), user, "{m}");
}

fn conns(reply: &Value) -> Vec<String> {
    let mut v: Vec<String> = reply["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conn"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn joins_leaves_events_and_every_way_of_asking_agree() {
    let gw = start(presence_config()).await;
    let mut alice = connect_as(&gw, Some("alice")).await;
    let r = ask(
        &mut alice,
        json!({"type":"subscribe","channels":["room:1"],"presence_events":true}),
    )
    .await;
    assert_eq!(r["type"], "subscribed", "{r}");
    let mut bob = connect_as(&gw, Some("bob")).await;
    subscribe(&mut bob, &["room:1"]).await;
    expect_event(&mut alice, "join", &bob.id, Some("bob")).await;
    let mut anon = connect(&gw).await;
    subscribe(&mut anon, &["room:1", "news"]).await;
    expect_event(&mut alice, "join", &anon.id, None).await;

    // The client command, for a subscriber.
    let r = ask(
        &mut alice,
        json!({"type":"presence","channel":"room:1","id":7}),
    )
    .await;
    assert_eq!(r["type"], "presence", "{r}");
    assert_eq!(
        (r["users"].as_u64(), r["clients_count"].as_u64()),
        (Some(2), Some(3)),
        "{r}"
    );
    assert_eq!(r["id"], 7);
    let mut want = vec![alice.id.clone(), bob.id.clone(), anon.id.clone()];
    want.sort();
    assert_eq!(conns(&r), want);
    // Refused: a channel without a rule, and a presence channel not subscribed to.
    let r = ask(
        &mut anon,
        json!({"type":"presence","channel":"news","id":1}),
    )
    .await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("bad_request")),
        "{r}"
    );
    let mut outsider = connect(&gw).await;
    let r = ask(&mut outsider, json!({"type":"presence","channel":"room:1"})).await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{r}"
    );

    // The internal HTTP API.
    let (status, body) = http(gw.http_addr(), "GET", "/presence?channel=room:1", b"").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["channel"], "room:1");
    assert_eq!(
        (v["users"].as_u64(), v["clients_count"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(conns(&v), want);
    assert!(v.get("type").is_none(), "{v}");
    let (status, _) = http(gw.http_addr(), "GET", "/presence?channel=news", b"").await;
    assert_eq!(status, 404);
    let (status, _) = http(gw.http_addr(), "GET", "/presence?channel=a%20b", b"").await;
    assert_eq!(status, 400);

    // Leaving: a closed connection and an unsubscribe.
    drop(bob);
    let bob_id = want
        .iter()
        .find(|c| **c != alice.id && **c != anon.id)
        .unwrap()
        .clone();
    expect_event(&mut alice, "leave", &bob_id, Some("bob")).await;
    let r = ask(&mut anon, json!({"type":"unsubscribe","channel":"room:1"})).await;
    assert_eq!(r["type"], "unsubscribed");
    expect_event(&mut alice, "leave", &anon.id, None).await;

    // gRPC.
    let mut g = grpc(&gw).await;
    let s = g
        .presence_stats(pb::PresenceStatsRequest {
            channels: vec!["room:1".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((s.channels[0].clients, s.channels[0].users), (1, 1));
    let e = g
        .presence_stats(pb::PresenceStatsRequest {
            channels: vec!["news".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let p = g
        .presence(pb::PresenceRequest {
            users: vec!["alice".into(), "bob".into()],
            channels: vec!["room:1".into(), "news".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((p.users[0].online, p.users[1].online), (true, false));
    let room = &p.channels[0];
    assert!(room.cluster);
    assert_eq!((room.subscribers, room.users), (1, 1));
    assert_eq!(room.clients[0].conn, alice.id);
    assert_eq!(room.clients[0].user, "alice");
    assert_eq!(
        (p.channels[1].subscribers, p.channels[1].cluster),
        (1, false)
    );
    let o = g
        .online(pb::OnlineRequest {
            users: vec!["alice".into(), "zed".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let o: Vec<(String, bool)> = o.users.into_iter().map(|u| (u.user, u.online)).collect();
    assert_eq!(o, vec![("alice".into(), true), ("zed".into(), false)]);
    let e = g
        .online(pb::OnlineRequest { users: vec![] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_tokens_info_claim_is_shown_and_joining_from_the_token_counts() {
    const SECRET: &str = "test-secret-test-secret-test-secret!";
    let gw = start(Config {
        auth_mode: pushgate_server::AuthMode::Jwt,
        jwt_hs256_secret: SECRET.into(),
        trusted_user_header: String::new(),
        ..presence_config()
    })
    .await;
    let claims = json!({
        "sub": "alice", "exp": get_current_timestamp() + 3600,
        "channels": ["room:*"], "subscribe": ["room:9"],
        "info": {"name": "Alice", "avatar": 3},
    });
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut req = ws_request(&gw, "");
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut c, _) = try_connect(req).await.expect("the token connects");
    let r = ask(&mut c, json!({"type":"presence","channel":"room:9"})).await;
    assert_eq!(r["clients_count"], 1, "{r}");
    assert_eq!(
        r["clients"][0]["info"],
        json!({"name":"Alice","avatar":3}),
        "{r}"
    );
    gw.shutdown().await;
}

#[test]
fn a_bad_presence_rule_is_refused_with_the_setting_named() {
    let c = Config {
        presence: vec![PresenceConfig {
            channels: "room:*:x*".into(),
        }],
        ..Config::default()
    };
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("presence"), "{e}");
    let c = Config {
        presence_ttl_ms: 100,
        ..Config::default()
    };
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("presence_ttl_ms"));
}
