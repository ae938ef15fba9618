//! After clients leave, every index and gauge returns to zero.
//! Alone in its test binary: the metrics recorder is process-wide, so no other
//! gateway may share the gauges it reads.

mod support;

use support::*;

#[tokio::test]
async fn indexes_and_gauges_return_to_zero_after_clients_leave() {
    let gw = start(config()).await;
    let mut clients = Vec::new();
    for i in 0..20 {
        let mut c = connect_as(&gw, Some(&format!("user{}", i % 3))).await;
        subscribe(&mut c, &["shared", &format!("own{i}")]).await;
        clients.push(c);
    }
    wait_for_stats(&gw, "all registered", |s| {
        s.connections == 20 && s.subscriptions == 40 && s.channels == 21
    })
    .await;
    // Half close politely, half just drop the socket.
    for (i, mut c) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            c.ws.close(None).await.unwrap();
        } else {
            drop(c);
        }
    }
    wait_for_stats(&gw, "everything released", |s| {
        s.connections == 0 && s.subscriptions == 0 && s.channels == 0
    })
    .await;
    assert_eq!(publish(&gw, "user=user1", "x").await["enqueued"], 0);
    let metrics = http(gw.http_addr(), "GET", "/metrics", b"").await.1;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("pushgate_connections{"))
    {
        assert!(line.ends_with(" 0"), "gauge back to zero: {line}");
    }
    gw.shutdown().await;
}
