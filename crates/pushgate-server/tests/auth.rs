//! Connection tokens: who may connect, what they may follow, and when they must renew.

mod support;

use futures_util::SinkExt;
use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-secret-test-secret-test-secret!";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn jwt_config() -> pushgate_server::Config {
    pushgate_server::Config {
        auth_mode: pushgate_server::AuthMode::Jwt,
        jwt_hs256_secret: SECRET.into(),
        trusted_user_header: String::new(),
        ..config()
    }
}

fn hs256(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn claims(user: &str, channels: &[&str]) -> Value {
    json!({"sub": user, "exp": get_current_timestamp() + 3600, "channels": channels})
}

/// Connects with `Authorization: Bearer <token>`.
async fn connect_with(gw: &pushgate_server::Gateway, token: &str) -> Result<Client, u16> {
    let mut req = ws_request(gw, "");
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    try_connect(req).await.map(|(c, _)| c)
}

#[tokio::test]
async fn a_token_is_accepted_in_the_header_the_query_or_the_subprotocol() {
    let gw = start(jwt_config()).await;
    let token = hs256(claims("alice", &["news"]));
    let c = connect_with(&gw, &token).await.expect("bearer header");
    drop(c);
    let (_, hello) = try_connect(ws_request(&gw, &format!("?token={token}")))
        .await
        .expect("query parameter");
    assert_eq!(hello["user"], "alice");
    // Browsers: the token as a second subprotocol; only pushgate.v1 is echoed.
    let mut req = ws_request(&gw, "");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("pushgate.v1, {token}").parse().unwrap(),
    );
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("subprotocol");
    assert_eq!(
        resp.headers()["sec-websocket-protocol"].to_str().unwrap(),
        "pushgate.v1"
    );
    drop(ws);
    gw.shutdown().await;
}

#[tokio::test]
async fn missing_forged_expired_and_wrong_issuer_tokens_get_401_and_no_websocket() {
    let mut cfg = jwt_config();
    cfg.jwt_issuer = "https://auth.example".into();
    cfg.jwt_audience = "pushgate".into();
    let gw = start(cfg).await;
    let good = json!({"sub": "a", "exp": get_current_timestamp() + 60,
                      "iss": "https://auth.example", "aud": "pushgate"});
    let c = connect_with(&gw, &hs256(good.clone())).await;
    assert!(c.is_ok(), "the good token connects");

    assert_eq!(
        try_connect(ws_request(&gw, "")).await.err(),
        Some(401),
        "missing"
    );
    let forged = encode(
        &Header::default(),
        &good,
        &EncodingKey::from_secret(b"another-secret-another-secret-another"),
    )
    .unwrap();
    let mut expired = good.clone();
    expired["exp"] = json!(get_current_timestamp() - 5);
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    // A token whose payload was edited after signing (user changed to "admin").
    let mut parts: Vec<String> = hs256(good.clone()).split('.').map(String::from).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("admin");
    parts[1] = b64.encode(payload.to_string());
    let tampered = parts.join(".");
    for (what, token) in [
        ("forged", forged),
        ("expired", hs256(expired)),
        ("wrong issuer", hs256(wrong_iss)),
        ("wrong audience", hs256(wrong_aud)),
        ("tampered", tampered),
        ("garbage", "not-a-token".into()),
    ] {
        assert_eq!(connect_with(&gw, &token).await.err(), Some(401), "{what}");
    }
    // An RS256 token is refused when no public key is configured.
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &good,
        &EncodingKey::from_rsa_pem(&std::fs::read(format!("{KEYS}/rs256_private.pem")).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        connect_with(&gw, &rs).await.err(),
        Some(401),
        "rs256 without key"
    );
    assert!(metric(&gw, "pushgate_handshake_refused_total", "status=\"401\"").await >= 8.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn tokens_not_valid_yet_issued_in_the_future_or_with_crit_get_401() {
    let gw = start(jwt_config()).await;
    let now = get_current_timestamp();
    let with = |extra: Value| {
        let mut c = json!({"sub": "alice", "exp": now + 7200});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        hs256(c)
    };
    for (extra, want) in [
        (json!({"nbf": now + 86_400}), Err(401)),
        (json!({"iat": now + 86_400}), Err(401)),
        (json!({"sub": "alice smith"}), Err(401)),
        // Within the default 5 s leeway: an issuer whose clock runs slightly ahead.
        (json!({"nbf": now + 1, "iat": now + 1}), Ok(())),
    ] {
        let got = connect_with(&gw, &with(extra.clone())).await.map(drop);
        assert_eq!(got, want, "{extra}");
    }
    let header = Header {
        crit: Some(vec!["exp".into()]),
        ..Default::default()
    };
    let crit = encode(
        &header,
        &claims("alice", &[]),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(connect_with(&gw, &crit).await.err(), Some(401));
    gw.shutdown().await;
}

#[tokio::test]
async fn user_a_never_receives_user_b_publications() {
    let gw = start(jwt_config()).await;
    let mut a = connect_with(&gw, &hs256(claims("alice", &[])))
        .await
        .unwrap();
    let mut b = connect_with(&gw, &hs256(claims("bob", &[]))).await.unwrap();
    publish(&gw, "user=bob", "for bob").await;
    expect_pub(&mut b.ws, None, "for bob").await;
    publish(&gw, "user=alice", "for alice").await;
    expect_pub(&mut a.ws, None, "for alice").await;
    // Alice's next message is the marker: bob's publication never reached her.
    expect_nothing_before(&gw, &mut [&mut a, &mut b], "marker").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn subscribing_beyond_the_tokens_channels_is_refused_and_nothing_is_delivered() {
    let gw = start(jwt_config()).await;
    let token = hs256(json!({
        "sub": "alice", "exp": get_current_timestamp() + 3600,
        "channels": ["news", "user:alice:*"], "subscribe": ["news"]
    }));
    let mut req = ws_request(&gw, "");
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut c, hello) = try_connect(req).await.unwrap();
    assert_eq!(hello["channels"], json!(["news"]), "joined on connect");
    subscribe(&mut c, &["user:alice:inbox"]).await;
    for forbidden in [
        vec!["sport"],
        vec!["user:bob:inbox"],
        vec!["user:alice:x", "secret"],
    ] {
        send_json(
            &mut c.ws,
            json!({"type": "subscribe", "channels": forbidden, "id": 7}),
        )
        .await;
        let r = next_json(&mut c.ws).await.unwrap();
        assert_eq!(
            (r["type"].as_str(), r["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "{r}"
        );
        assert_eq!(r["id"], 7);
    }
    for ch in ["sport", "user:bob:inbox", "secret", "user:alice:x"] {
        assert_eq!(
            publish(&gw, &format!("channel={ch}"), "leak").await["enqueued"],
            0,
            "{ch}"
        );
    }
    publish(&gw, "channel=news", "hello").await;
    expect_pub(&mut c.ws, Some("news"), "hello").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn rs256_from_a_pem_file_and_es256_from_a_jwks_file() {
    let key = |f: &str| std::fs::read(format!("{KEYS}/{f}")).unwrap();
    let mut cfg = jwt_config();
    cfg.jwt_hs256_secret.clear();
    cfg.jwt_public_key_file = format!("{KEYS}/rs256_public.pem");
    let gw = start(cfg).await;
    let rs = |c: Value| {
        let k = EncodingKey::from_rsa_pem(&key("rs256_private.pem")).unwrap();
        encode(&Header::new(Algorithm::RS256), &c, &k).unwrap()
    };
    connect_with(&gw, &rs(claims("alice", &[])))
        .await
        .expect("RS256");
    assert_eq!(
        connect_with(&gw, &hs256(claims("alice", &[]))).await.err(),
        Some(401),
        "HS256 is off without a secret"
    );
    gw.shutdown().await;

    let mut cfg = jwt_config();
    cfg.jwt_hs256_secret.clear();
    cfg.jwks_file = format!("{KEYS}/jwks.json");
    let gw = start(cfg).await;
    let es = |kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        let k = EncodingKey::from_ec_pem(&key("es256_private.pem")).unwrap();
        encode(&h, &claims("carol", &[]), &k).unwrap()
    };
    connect_with(&gw, &es("ec-1")).await.expect("ES256 via kid");
    assert_eq!(
        connect_with(&gw, &es("nope")).await.err(),
        Some(401),
        "unknown kid"
    );
    assert_eq!(
        connect_with(&gw, &es("rsa-1")).await.err(),
        Some(401),
        "wrong key type"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_is_warned_then_closed_with_4003_unless_refreshed() {
    let mut cfg = jwt_config();
    cfg.heartbeat_interval_ms = 100;
    cfg.token_refresh_grace_ms = 1_000;
    let gw = start(cfg).await;
    let soon = |user: &str, channels: &[&str]| {
        hs256(json!({"sub": user, "exp": get_current_timestamp() + 2, "channels": channels}))
    };
    let mut lazy = connect_with(&gw, &soon("lazy", &[])).await.unwrap();
    let mut keen = connect_with(&gw, &soon("keen", &["a", "b"])).await.unwrap();
    subscribe(&mut keen, &["a", "b"]).await;

    let warned = next_json(&mut keen.ws).await.unwrap();
    assert_eq!(warned["type"], "token_expired", "{warned}");
    assert_eq!(warned["grace_ms"], 1000);
    // Another user's token is refused; the user's own fresh token is taken, and
    // channels it no longer allows are dropped.
    let other = hs256(claims("lazy", &["*"]));
    send_json(
        &mut keen.ws,
        json!({"type": "refresh", "token": other, "id": 1}),
    )
    .await;
    let r = next_json(&mut keen.ws).await.unwrap();
    assert_eq!(r["code"], "refresh_failed", "{r}");
    let fresh = hs256(claims("keen", &["a"]));
    send_json(
        &mut keen.ws,
        json!({"type": "refresh", "token": fresh, "id": 2}),
    )
    .await;
    let r = next_json(&mut keen.ws).await.unwrap();
    assert_eq!(r["type"], "refreshed", "{r}");
    assert_eq!(r["unsubscribed"], json!(["b"]));
    assert_eq!(r["id"], 2);

    // The lazy one is told, then closed with 4003.
    let warned = next_json(&mut lazy.ws).await.unwrap();
    assert_eq!(warned["type"], "token_expired");
    match next_msg(&mut lazy.ws).await.unwrap() {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 4003),
        other => panic!("expected close 4003, got {other:?}"),
    }
    // The refreshed one stays and still receives what its new token allows.
    publish(&gw, "channel=a", "still here").await;
    expect_pub(&mut keen.ws, Some("a"), "still here").await;
    keen.ws.send(Message::Close(None)).await.unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn origins_outside_the_allowed_list_get_403() {
    let mut cfg = config();
    cfg.allowed_origins = vec!["https://app.example.com".into()];
    let gw = start(cfg).await;
    let with_origin = |o: &str| {
        let mut req = ws_request(&gw, "");
        req.headers_mut().insert("origin", o.parse().unwrap());
        req
    };
    assert!(try_connect(with_origin("https://app.example.com"))
        .await
        .is_ok());
    assert!(try_connect(with_origin("HTTPS://APP.EXAMPLE.COM"))
        .await
        .is_ok());
    assert_eq!(
        try_connect(with_origin("https://evil.example")).await.err(),
        Some(403)
    );
    assert!(
        try_connect(ws_request(&gw, "")).await.is_ok(),
        "no Origin: not a browser"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn refreshes_are_limited_per_connection_and_the_connection_stays() {
    let gw = start(jwt_config()).await;
    let mut c = connect_with(&gw, &hs256(claims("alice", &[])))
        .await
        .unwrap();
    for n in 1..=6 {
        let token = hs256(claims("alice", &["news"]));
        send_json(
            &mut c.ws,
            json!({"type": "refresh", "token": token, "id": n}),
        )
        .await;
        let r = next_json(&mut c.ws).await.unwrap();
        assert_eq!(r["id"], n, "{r}");
        if n <= 5 {
            assert_eq!(r["type"], "refreshed", "{r}");
        } else {
            assert_eq!(r["code"], "refresh_failed", "{r}");
            let m = r["message"].as_str().unwrap();
            assert!(m.contains("at most 5 refreshes per minute"), "{r}");
        }
    }
    assert!(
        metric(
            &gw,
            "pushgate_limit_rejections_total",
            "limit=\"refresh_rate\""
        )
        .await
            >= 1.0
    );
    subscribe(&mut c, &["news"]).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn anonymous_connections_cannot_refresh() {
    let gw = start(config()).await;
    let mut c = connect(&gw).await;
    send_json(
        &mut c.ws,
        json!({"type": "refresh", "token": "a.b.c", "id": 1}),
    )
    .await;
    let r = next_json(&mut c.ws).await.unwrap();
    assert_eq!(r["code"], "refresh_failed", "{r}");
    gw.shutdown().await;
}
