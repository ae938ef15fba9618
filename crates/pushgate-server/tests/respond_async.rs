//! `Prefer: respond-async` on `POST /publish` (RFC 7240): answered 202 once the
//! publication is accepted, without this node's connection counts; delivered as any
//! other, in the order submitted; refusals are still answered as refusals.

mod support;

use pushgate_server::config::HistoryConfig;
use pushgate_server::Config;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFER: &str = "Prefer: respond-async\r\n";

/// Every request of `paths` written at once on one keep-alive connection (HTTP/1.1
/// pipelining), then the answers read in order: (status, headers, body) each.
async fn pipelined(
    gw: &pushgate_server::Gateway,
    reqs: &[(String, String)],
) -> Vec<(u16, String, Value)> {
    let mut s = TcpStream::connect(gw.http_addr()).await.unwrap();
    let mut out = Vec::new();
    for (path, body) in reqs {
        out.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: test\r\n{PREFER}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    s.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    while answers.len() < reqs.len() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(&buf).unwrap() {
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap();
            if buf.len() >= head + len {
                let named: String = resp
                    .headers
                    .iter()
                    .map(|h| {
                        format!(
                            "{}: {}\n",
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value)
                        )
                    })
                    .collect();
                let body = serde_json::from_slice(&buf[head..head + len]).unwrap();
                answers.push((resp.code.unwrap(), named, body));
                buf.drain(..head + len);
                continue;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("answers within the wait")
            .unwrap();
        assert!(n > 0, "connection closed after {} answers", answers.len());
        buf.extend_from_slice(&chunk[..n]);
    }
    answers
}

#[tokio::test]
async fn pipelined_publications_are_answered_202_and_delivered_in_order() {
    let gw = start(config()).await;
    let mut a = connect(&gw).await;
    let mut b = connect(&gw).await;
    let reqs: Vec<_> = (0..200)
        .map(|i| ("/publish?all=true".to_owned(), format!("m{i}")))
        .collect();
    for (status, headers, body) in pipelined(&gw, &reqs).await {
        assert_eq!(status, 202, "{body}");
        assert!(
            headers.contains("preference-applied: respond-async\n"),
            "{headers}"
        );
        assert_eq!(body, serde_json::json!({"nodes_accepted": 1}));
    }
    for c in [&mut a, &mut b] {
        for i in 0..200 {
            expect_pub(&mut c.ws, None, &format!("m{i}")).await;
        }
    }
    expect_nothing_before(&gw, &mut [&mut a, &mut b], "sentinel").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn refusals_are_answered_as_refusals() {
    let gw = start(Config {
        max_payload_bytes: 256,
        ..config()
    })
    .await;
    let mut a = connect(&gw).await;
    for (query, body, status) in [
        ("", "x", 400),
        ("all=true&channel=a", "x", 400),
        ("channel=bad%20name", "x", 400),
        ("all=true", &"x".repeat(257), 413),
    ] {
        let (got, text) = http_with(
            gw.http_addr(),
            "POST",
            &format!("/publish?{query}"),
            PREFER,
            body.as_bytes(),
        )
        .await;
        assert_eq!(got, status, "{query}: {text}");
        assert!(text.contains("\"error\""), "{text}");
    }
    // Nothing of them reached anyone.
    expect_nothing_before(&gw, &mut [&mut a], "sentinel").await;
    gw.shutdown().await;
}

/// `POST /publish?all=true` of "once" with the idempotency key k-1: (status, answer).
async fn publish_once(gw: &pushgate_server::Gateway, early: bool) -> (u16, Value) {
    let key = "Idempotency-Key: k-1\r\n";
    let headers = if early {
        format!("{PREFER}{key}")
    } else {
        key.to_owned()
    };
    let (status, text) = http_with(
        gw.http_addr(),
        "POST",
        "/publish?all=true",
        &headers,
        b"once",
    )
    .await;
    (status, serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn an_idempotency_key_accepted_early_still_answers_the_retry_with_the_outcome() {
    let gw = start(config()).await;
    let mut a = connect(&gw).await;
    let mut b = connect(&gw).await;
    let (status, r) = publish_once(&gw, true).await;
    assert_eq!((status, r.get("duplicate")), (202, None), "{r}");
    // The key's outcome is recorded once the fan-out is done, after the answer: a
    // retry (waiting as usual) is answered as a duplicate, not published again.
    let (status, r) = publish_once(&gw, false).await;
    assert_eq!(
        (
            status,
            r["duplicate"].as_bool(),
            r["nodes_accepted"].as_u64()
        ),
        (200, Some(true), Some(1)),
        "{r}"
    );
    // A retry with the early answer asked for: a duplicate too.
    let (status, r) = publish_once(&gw, true).await;
    assert_eq!((status, r["duplicate"].as_bool()), (202, Some(true)), "{r}");
    for c in [&mut a, &mut b] {
        expect_pub(&mut c.ws, None, "once").await;
    }
    expect_nothing_before(&gw, &mut [&mut a, &mut b], "sentinel").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_history_publication_answers_its_position() {
    let gw = start(Config {
        history: vec![HistoryConfig {
            channels: "chat:*".into(),
            size: 100,
            ttl_ms: 600_000,
        }],
        ..config()
    })
    .await;
    let reqs: Vec<_> = (1..=3)
        .map(|i| ("/publish?channel=chat:1".to_owned(), format!("h{i}")))
        .collect();
    let answers = pipelined(&gw, &reqs).await;
    let epoch = answers[0].2["positions"]["chat:1"]["epoch"].clone();
    assert!(epoch.is_string(), "{:?}", answers[0].2);
    for (i, (status, _, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 202, "{body}");
        assert_eq!(
            body["positions"]["chat:1"]["offset"],
            i as u64 + 1,
            "{body}"
        );
        assert_eq!(body["positions"]["chat:1"]["epoch"], epoch, "{body}");
    }
    // The publications are in the channel's history, as with a 200.
    let (status, text) = http(gw.http_addr(), "GET", "/history?channel=chat:1", b"").await;
    assert_eq!(status, 200, "{text}");
    let page: Value = serde_json::from_str(&text).unwrap();
    let data: Vec<_> = page["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|p| p["data"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(data, ["h1", "h2", "h3"]);
    gw.shutdown().await;
}
