//! The Pusher protocol on the WebSocket listener, through the real gateway, with an
//! independent client (tokio-tungstenite speaking Pusher's frames as pusher-js does):
//! connecting (and the refusals), public, private and presence channels with Pusher's
//! signatures, publications both ways between Pusher and pushgate.v1, client events,
//! sign-in and terminate, ping, and the drain's close code.

mod support;

use futures_util::{SinkExt, StreamExt};
use pushgate_pusher::{auth, PusherApp};
use pushgate_server::{Config, Gateway};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

fn app() -> PusherApp {
    PusherApp {
        id: "1".into(),
        key: "app-key".into(),
        secret: "app-secret".into(),
        client_events: true,
        client_events_per_second: 3,
        ..PusherApp::default()
    }
}

fn pusher_config() -> Config {
    let other = PusherApp {
        id: "2".into(),
        key: "other-key".into(),
        secret: "other-secret".into(),
        ..PusherApp::default()
    };
    Config {
        pusher_apps: vec![app(), other],
        ..config()
    }
}

struct Pc {
    ws: Ws,
    socket_id: String,
}

/// The next Pusher message, with its `data` parsed when it is a JSON string.
async fn next(ws: &mut Ws) -> Value {
    let mut m = next_json(ws).await.expect("a message");
    if let Some(Value::String(s)) = m.get("data") {
        if let Ok(v) = serde_json::from_str::<Value>(s) {
            m["data"] = v;
        }
    }
    m
}

async fn pusher_connect(gw: &Gateway, key: &str) -> Pc {
    let url = format!(
        "ws://{}/app/{key}?protocol=7&client=js&version=8.4.0",
        gw.ws_addr()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let m = next(&mut ws).await;
    assert_eq!(m["event"], "pusher:connection_established", "{m}");
    let socket_id = m["data"]["socket_id"].as_str().unwrap().to_owned();
    let (a, b) = socket_id.split_once('.').unwrap();
    assert!(
        a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()),
        "{socket_id}"
    );
    assert!(m["data"]["activity_timeout"].as_u64().unwrap() > 0);
    Pc { ws, socket_id }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Subscribes (signing for private and presence channels) and returns the answer.
async fn pusher_subscribe(c: &mut Pc, channel: &str, member: Option<Value>) -> Value {
    let data = member.map(|m| m.to_string());
    let mut d = json!({"channel": channel});
    if channel.starts_with("private-") || channel.starts_with("presence-") {
        d["auth"] = auth::channel_auth(&app(), &c.socket_id, channel, data.as_deref()).into();
    }
    if let Some(data) = data {
        d["channel_data"] = data.into();
    }
    send(&mut c.ws, json!({"event":"pusher:subscribe","data":d})).await;
    next(&mut c.ws).await
}

/// Reads until a close frame; returns its code.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match next_msg(ws).await {
            Ok(Message::Close(Some(f))) => return f.code.into(),
            Ok(Message::Close(None)) | Err(_) => return 0,
            Ok(_) => continue,
        }
    }
}

#[tokio::test]
async fn refusals_come_as_pusher_errors_after_the_upgrade() {
    let gw = start(pusher_config()).await;
    for (path, code) in [
        // (path, Pusher code)
        ("/app/nope?protocol=7", 4001),
        ("/app/app-key?protocol=4", 4007),
        ("/app/app-key?protocol=x", 4006),
        ("/app/app-key/extra?protocol=7", 4005),
    ] {
        let url = format!("ws://{}{path}", gw.ws_addr());
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade");
        let m = next(&mut ws).await;
        assert_eq!(
            (m["event"].as_str(), m["data"]["code"].as_u64()),
            (Some("pusher:error"), Some(code)),
            "{path}: {m}"
        );
        assert_eq!(u64::from(close_code(&mut ws).await), code, "{path}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn public_channels_meet_pushgate_v1_both_ways() {
    let gw = start(pusher_config()).await;
    let mut p = pusher_connect(&gw, "app-key").await;
    let r = pusher_subscribe(&mut p, "news", None).await;
    assert_eq!(
        (r["event"].as_str(), r["channel"].as_str()),
        (Some("pusher_internal:subscription_succeeded"), Some("news")),
        "{r}"
    );
    let mut v1 = connect(&gw).await;
    subscribe(&mut v1, &["pusher/1/news"]).await;

    // pushgate.v1 -> Pusher: event pushgate:publication, the payload as data.
    publish(&gw, "channel=pusher/1/news", "hello").await;
    let m = next_json(&mut p.ws).await.unwrap();
    assert_eq!(
        m,
        json!({"event":"pushgate:publication","channel":"news","data":"hello"})
    );
    expect_pub(&mut v1.ws, Some("pusher/1/news"), "hello").await;

    // Pusher trigger -> both: the event for Pusher, the envelope for pushgate.v1.
    let pusher = gw.pusher().expect("apps configured");
    let d = pusher
        .publish(&app(), &["news".into()], "my-event", r#"{"a":1}"#, None)
        .await
        .unwrap();
    assert_eq!(d.local.enqueued, 2);
    let m = next_json(&mut p.ws).await.unwrap();
    assert_eq!(
        m,
        json!({"event":"my-event","channel":"news","data":"{\"a\":1}"})
    );
    expect_pub(
        &mut v1.ws,
        Some("pusher/1/news"),
        r#"{"event":"my-event","data":"{\"a\":1}"}"#,
    )
    .await;

    // Excluding the Pusher connection by socket id.
    let d = pusher
        .publish(&app(), &["news".into()], "e2", "x", Some(&p.socket_id))
        .await
        .unwrap();
    assert_eq!(d.local.enqueued, 1);
    expect_pub(
        &mut v1.ws,
        Some("pusher/1/news"),
        r#"{"event":"e2","data":"x"}"#,
    )
    .await;

    // Another app's channel of the same name is another channel.
    let other = pusher.apps().by_id("2").unwrap().clone();
    let d = pusher
        .publish(&other, &["news".into()], "e3", "y", None)
        .await
        .unwrap();
    assert_eq!(d.local.enqueued, 0);

    // Ping, then a marker proves nothing else arrived.
    send(&mut p.ws, json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(next(&mut p.ws).await["event"], "pusher:pong");
    publish(&gw, "channel=pusher/1/news", "marker").await;
    assert_eq!(next_json(&mut p.ws).await.unwrap()["data"], "marker");
    assert_eq!(pusher.channels(&app(), "").await.unwrap().len(), 1);
    assert_eq!(pusher.subscription_count(&app(), "news").await.unwrap(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn private_channels_need_the_apps_signature() {
    let gw = start(pusher_config()).await;
    let mut p = pusher_connect(&gw, "app-key").await;
    // Missing auth.
    send(
        &mut p.ws,
        json!({"event":"pusher:subscribe","data":{"channel":"private-a"}}),
    )
    .await;
    let m = next(&mut p.ws).await;
    assert_eq!(
        (m["event"].as_str(), m["data"]["status"].as_u64()),
        (Some("pusher:subscription_error"), Some(401)),
        "{m}"
    );
    // Forged: signed with another secret, and a signature for another socket.
    let forged = format!(
        "app-key:{}",
        auth::sign("wrong", &format!("{}:private-a", p.socket_id))
    );
    let stolen = auth::channel_auth(&app(), "1.1", "private-a", None);
    for a in [forged, stolen] {
        send(
            &mut p.ws,
            json!({"event":"pusher:subscribe","data":{"channel":"private-a","auth":a}}),
        )
        .await;
        assert_eq!(next(&mut p.ws).await["event"], "pusher:subscription_error");
    }
    // Nothing reached it meanwhile; a signed subscribe works.
    publish(&gw, "channel=pusher/1/private-a", "secret").await;
    let r = pusher_subscribe(&mut p, "private-a", None).await;
    assert_eq!(r["event"], "pusher_internal:subscription_succeeded", "{r}");
    publish(&gw, "channel=pusher/1/private-a", "now").await;
    assert_eq!(next_json(&mut p.ws).await.unwrap()["data"], "now");

    // Without a token, pushgate.v1 and SSE cannot follow it around the signature.
    let mut v1 = connect(&gw).await;
    for ch in [
        "pusher/1/private-a",
        "pusher/1/presence-r",
        "pusher/1/private-encrypted-x",
    ] {
        send_json(
            &mut v1.ws,
            json!({"type":"subscribe","channels":["news", ch],"id":5}),
        )
        .await;
        let r = next_json(&mut v1.ws).await.unwrap();
        assert_eq!(
            (r["type"].as_str(), r["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "{ch}: {r}"
        );
    }
    let (status, _) = http(gw.ws_addr(), "GET", "/sse?channel=pusher/1/private-a", b"").await;
    assert_eq!(status, 403);
    gw.shutdown().await;
}

#[tokio::test]
async fn presence_members_and_client_events() {
    let gw = start(pusher_config()).await;
    let ch = "presence-room";
    let mut a = pusher_connect(&gw, "app-key").await;
    let r = pusher_subscribe(
        &mut a,
        ch,
        Some(json!({"user_id":"alice","user_info":{"name":"A"}})),
    )
    .await;
    assert_eq!(r["event"], "pusher_internal:subscription_succeeded", "{r}");
    assert_eq!(r["data"]["presence"]["count"], 1, "{r}");
    assert_eq!(r["data"]["presence"]["hash"]["alice"]["name"], "A");

    let mut b = pusher_connect(&gw, "app-key").await;
    let r = pusher_subscribe(&mut b, ch, Some(json!({"user_id":"bob"}))).await;
    assert_eq!(r["data"]["presence"]["count"], 2, "{r}");
    let mut ids: Vec<String> =
        serde_json::from_value(r["data"]["presence"]["ids"].clone()).unwrap();
    ids.sort();
    assert_eq!(ids, ["alice", "bob"]);
    let m = next(&mut a.ws).await;
    assert_eq!(
        (m["event"].as_str(), m["data"]["user_id"].as_str()),
        (Some("pusher_internal:member_added"), Some("bob")),
        "{m}"
    );

    // A client event reaches the other member with the sender's user id, not the sender.
    send(
        &mut b.ws,
        json!({"event":"client-typing","channel":ch,"data":{"on":true}}),
    )
    .await;
    let m = next(&mut a.ws).await;
    assert_eq!(m["event"], "client-typing", "{m}");
    assert_eq!(m["data"]["on"], true);
    assert_eq!(m["user_id"], "bob");
    // Over the rate (3 per second): 4301. Sent within one second unless the machine
    // stalls; the assertion only needs one refusal among many.
    for _ in 0..20 {
        send(
            &mut b.ws,
            json!({"event":"client-x","channel":ch,"data":{}}),
        )
        .await;
    }
    let mut refused = false;
    for _ in 0..20 {
        let m = next(&mut b.ws).await;
        if m["event"] == "pusher:error" && m["data"]["code"] == 4301 {
            refused = true;
            break;
        }
    }
    assert!(refused, "no 4301 for 20 client events");

    // Not on a public channel.
    let _ = pusher_subscribe(&mut b, "public", None).await;
    send(
        &mut b.ws,
        json!({"event":"client-x","channel":"public","data":{}}),
    )
    .await;
    loop {
        let m = next(&mut b.ws).await;
        if m["event"] == "pusher:error" && m["data"]["code"].is_null() {
            break;
        }
    }

    // Bob leaves: member_removed.
    b.ws.close(None).await.unwrap();
    loop {
        let m = next(&mut a.ws).await;
        if m["event"] == "pusher_internal:member_removed" {
            assert_eq!(m["data"]["user_id"], "bob");
            break;
        }
    }
    let pusher = gw.pusher().unwrap();
    assert_eq!(pusher.presence_users(&app(), ch).await.unwrap(), ["alice"]);
    gw.shutdown().await;
}

#[tokio::test]
async fn signed_in_users_are_terminated_and_drain_says_reconnect() {
    let gw = start(pusher_config()).await;
    let mut p = pusher_connect(&gw, "app-key").await;
    let user_data = r#"{"id":"u1"}"#;
    let bad = json!({"event":"pusher:signin","data":{"user_data":user_data,"auth":"app-key:00"}});
    send(&mut p.ws, bad).await;
    assert_eq!(next(&mut p.ws).await["data"]["code"], 4009);
    let a = auth::signin_auth(&app(), &p.socket_id, user_data);
    send(
        &mut p.ws,
        json!({"event":"pusher:signin","data":{"user_data":user_data,"auth":a}}),
    )
    .await;
    assert_eq!(next(&mut p.ws).await["event"], "pusher:signin_success");
    let pusher = gw.pusher().unwrap().clone();
    let r = pusher.terminate_user(&app(), "u1").await.unwrap();
    assert_eq!(r.local.applied, 1);
    let m = next(&mut p.ws).await;
    assert_eq!(
        (m["event"].as_str(), m["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4009))
    );
    assert_eq!(close_code(&mut p.ws).await, 4009);

    let mut q = pusher_connect(&gw, "app-key").await;
    let stop = tokio::spawn(gw.shutdown());
    let m = next(&mut q.ws).await;
    assert_eq!(m["data"]["code"], 4200, "{m}");
    assert_eq!(close_code(&mut q.ws).await, 4200);
    let _ = q.ws.next().await;
    stop.await.unwrap();
}
