//! Publications reach exactly their targets: all, channel, user, connection.
//! Each "nothing else arrived" is proved by a sentinel broadcast that must come next.

mod support;

use support::*;

#[tokio::test]
async fn broadcast_reaches_every_client_once() {
    let gw = start(config()).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(connect(&gw).await);
    }
    let r = publish(&gw, "all=true", "hello everyone").await;
    assert_eq!(r["enqueued"], 5);
    for c in &mut clients {
        expect_pub(&mut c.ws, None, "hello everyone").await;
    }
    let mut refs: Vec<&mut Client> = clients.iter_mut().collect();
    expect_nothing_before(&gw, &mut refs, "sentinel").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn channel_publication_reaches_only_its_subscribers() {
    let gw = start(config()).await;
    let (mut news, mut sport, mut both, mut none) = (
        connect(&gw).await,
        connect(&gw).await,
        connect(&gw).await,
        connect(&gw).await,
    );
    subscribe(&mut news, &["news"]).await;
    subscribe(&mut sport, &["sport"]).await;
    subscribe(&mut both, &["news", "sport"]).await;

    let r = publish(&gw, "channel=news", "headline").await;
    assert_eq!(r["enqueued"], 2);
    expect_pub(&mut news.ws, Some("news"), "headline").await;
    expect_pub(&mut both.ws, Some("news"), "headline").await;
    expect_nothing_before(
        &gw,
        &mut [&mut news, &mut sport, &mut both, &mut none],
        "s1",
    )
    .await;

    // Two channels in one publication: a client following both gets one frame per channel.
    let r = publish(&gw, "channel=news&channel=sport", "both").await;
    assert_eq!(r["enqueued"], 4);
    expect_pub(&mut sport.ws, Some("sport"), "both").await;
    expect_pub(&mut news.ws, Some("news"), "both").await;
    let a = next_json(&mut both.ws).await.unwrap();
    let b = next_json(&mut both.ws).await.unwrap();
    let mut chans = [
        a["channel"].as_str().unwrap().to_owned(),
        b["channel"].as_str().unwrap().to_owned(),
    ];
    chans.sort();
    assert_eq!(chans, ["news", "sport"]);
    expect_nothing_before(
        &gw,
        &mut [&mut news, &mut sport, &mut both, &mut none],
        "s2",
    )
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let gw = start(config()).await;
    let mut c = connect(&gw).await;
    subscribe(&mut c, &["a", "b"]).await;
    send_json(
        &mut c.ws,
        serde_json::json!({"type": "unsubscribe", "channel": "a", "id": "u1"}),
    )
    .await;
    let r = next_json(&mut c.ws).await.unwrap();
    assert_eq!(r["type"], "unsubscribed");
    assert_eq!(r["id"], "u1");
    assert_eq!(publish(&gw, "channel=a", "gone").await["enqueued"], 0);
    assert_eq!(publish(&gw, "channel=b", "still").await["enqueued"], 1);
    expect_pub(&mut c.ws, Some("b"), "still").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn user_publication_reaches_all_of_that_users_connections_and_no_one_else() {
    let gw = start(config()).await;
    let mut alice1 = connect_as(&gw, Some("alice")).await;
    let mut alice2 = connect_as(&gw, Some("alice")).await;
    let mut bob = connect_as(&gw, Some("bob")).await;
    let mut anon = connect(&gw).await;

    let r = publish(&gw, "user=alice", "for alice").await;
    assert_eq!(r["enqueued"], 2);
    expect_pub(&mut alice1.ws, None, "for alice").await;
    expect_pub(&mut alice2.ws, None, "for alice").await;
    expect_nothing_before(
        &gw,
        &mut [&mut alice1, &mut alice2, &mut bob, &mut anon],
        "s",
    )
    .await;
    assert_eq!(publish(&gw, "user=carol", "nobody").await["enqueued"], 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn connection_publication_reaches_one_connection_and_exclude_is_honoured() {
    let gw = start(config()).await;
    let mut a = connect(&gw).await;
    let mut b = connect(&gw).await;
    let mut c = connect(&gw).await;
    let r = publish(&gw, &format!("conn={}", b.id), "just b").await;
    assert_eq!(r["enqueued"], 1);
    expect_pub(&mut b.ws, None, "just b").await;
    expect_nothing_before(&gw, &mut [&mut a, &mut b, &mut c], "s1").await;

    let r = publish(&gw, &format!("all=true&exclude={}", a.id), "not a").await;
    assert_eq!(r["enqueued"], 2);
    expect_pub(&mut b.ws, None, "not a").await;
    expect_pub(&mut c.ws, None, "not a").await;
    expect_nothing_before(&gw, &mut [&mut a, &mut b, &mut c], "s2").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn binary_payloads_stay_binary() {
    let gw = start(config()).await;
    let mut c = connect(&gw).await;
    subscribe(&mut c, &["bin"]).await;
    let (status, _) = support::http(
        gw.http_addr(),
        "POST",
        "/publish?channel=bin&binary=true",
        &[0, 159, 255],
    )
    .await;
    assert_eq!(status, 200);
    match next_msg(&mut c.ws).await.unwrap() {
        tokio_tungstenite::tungstenite::Message::Binary(b) => {
            assert_eq!(&b[..], &[3, b'b', b'i', b'n', 0, 159, 255])
        }
        other => panic!("expected binary, got {other:?}"),
    }
    gw.shutdown().await;
}
