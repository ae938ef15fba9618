//! The API over a fake gateway: routing, app lookup, signatures, answers.

use std::sync::Mutex;

use super::*;
use crate::PusherApp;

const NOW: i64 = 1_700_000_000;

#[derive(Default)]
struct Fake {
    published: Mutex<Vec<Event>>,
    terminated: Mutex<Vec<String>>,
    /// Every `subscriptions` call: one per event or channel read, whatever its width.
    counted: Mutex<Vec<Vec<String>>>,
    /// The census fails (a node did not answer).
    no_census: bool,
}

impl Backend for Fake {
    async fn publish(&self, _: &PusherApp, e: Event) -> Result<(), BackendError> {
        self.published.lock().unwrap().push(e);
        Ok(())
    }
    async fn channels(&self, _: &PusherApp, _: &str) -> Result<Vec<(String, u64)>, BackendError> {
        Ok(vec![
            ("news".into(), 3),
            ("presence-room".into(), 4),
            ("gone".into(), 0),
        ])
    }
    async fn subscriptions(&self, _: &PusherApp, cs: &[String]) -> Result<Vec<u64>, BackendError> {
        self.counted.lock().unwrap().push(cs.to_vec());
        if self.no_census {
            return Err(BackendError::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                source: "1 of 2 nodes did not answer the channel count".into(),
            });
        }
        Ok(cs
            .iter()
            .map(|c| match c.as_str() {
                "news" => 3,
                "presence-room" => 4,
                _ => 0,
            })
            .collect())
    }
    async fn users(&self, _: &PusherApp, c: &str) -> Result<Vec<String>, BackendError> {
        Ok(if c == "presence-room" {
            vec!["alice".into(), "bob".into()]
        } else {
            vec![]
        })
    }
    async fn terminate(&self, _: &PusherApp, user: &str) -> Result<(), BackendError> {
        self.terminated.lock().unwrap().push(user.into());
        Ok(())
    }
}

fn api() -> PusherApi<Fake> {
    api_over(Fake::default())
}

fn api_over(fake: Fake) -> PusherApi<Fake> {
    let apps = PusherApps::new(vec![PusherApp {
        id: "7".into(),
        key: "k7".into(),
        secret: "s7".into(),
        ..PusherApp::default()
    }])
    .unwrap();
    PusherApi::new(Arc::new(apps), fake, 1000)
}

/// A query string signed as the SDKs sign it.
fn signed(method: &str, path: &str, params: &[(&str, &str)], body: &[u8], secret: &str) -> String {
    let mut all: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("auth_key".into(), "k7".into()));
    all.push(("auth_timestamp".into(), NOW.to_string()));
    all.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        all.push(("body_md5".into(), body_md5(body)));
    }
    all.sort();
    let to_sign: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let sig = sign(secret, &format!("{method}\n{path}\n{}", to_sign.join("&")));
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &all {
        q.append_pair(k, v);
    }
    q.append_pair("auth_signature", &sig);
    q.finish()
}

async fn call(
    api: &PusherApi<Fake>,
    method: Method,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
) -> Result<Value, ApiError> {
    let q = signed(method.as_str(), path, params, body.as_bytes(), "s7");
    api.answer(&method, path, &q, body.as_bytes(), NOW).await
}

#[tokio::test]
async fn events_and_batches_publish_in_order() {
    let api = api();
    let body = r#"{"name":"e","channels":["a","b"],"data":"d","socket_id":"1.2"}"#;
    let v = call(&api, Method::POST, "/apps/7/events", &[], body)
        .await
        .unwrap();
    assert_eq!(v, json!({}));
    let batch = r#"{"batch":[{"name":"x","channel":"a","data":"1"},{"name":"y","channel":"b","data":"2"}]}"#;
    let v = call(&api, Method::POST, "/apps/7/batch_events", &[], batch)
        .await
        .unwrap();
    assert_eq!(v, json!({}));
    let p = api.backend.published.lock().unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].channels, ["a", "b"]);
    assert_eq!(p[0].socket_id.as_deref(), Some("1.2"));
    assert_eq!((p[1].name.as_str(), p[2].name.as_str()), ("x", "y"));
}

#[tokio::test]
async fn info_on_events_answers_the_channels_attributes() {
    let api = api();
    let body = r#"{"name":"e","channel":"presence-room","data":"d","info":"user_count,subscription_count"}"#;
    let v = call(&api, Method::POST, "/apps/7/events", &[], body)
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"channels":{"presence-room":{"user_count":2,"subscription_count":4}}})
    );
    let batch = r#"{"batch":[{"name":"x","channel":"news","data":"1","info":"subscription_count"},{"name":"y","channel":"b","data":"2"}]}"#;
    let v = call(&api, Method::POST, "/apps/7/batch_events", &[], batch)
        .await
        .unwrap();
    assert_eq!(v, json!({"batch":[{"news":{"subscription_count":3}},{}]}));
}

#[tokio::test]
async fn channel_queries() {
    let api = api();
    let v = call(&api, Method::GET, "/apps/7/channels", &[], "")
        .await
        .unwrap();
    assert_eq!(v, json!({"channels":{"news":{},"presence-room":{}}}));
    let v = call(
        &api,
        Method::GET,
        "/apps/7/channels",
        &[
            ("filter_by_prefix", "presence-"),
            ("info", "user_count,subscription_count"),
        ],
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        v,
        json!({"channels":{"presence-room":{"user_count":2,"subscription_count":4}}})
    );
    let e = call(
        &api,
        Method::GET,
        "/apps/7/channels",
        &[("info", "user_count")],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);

    let v = call(
        &api,
        Method::GET,
        "/apps/7/channels/news",
        &[("info", "subscription_count")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(v, json!({"occupied":true,"subscription_count":3}));
    let v = call(&api, Method::GET, "/apps/7/channels/quiet", &[], "")
        .await
        .unwrap();
    assert_eq!(v, json!({"occupied":false}));
    let v = call(
        &api,
        Method::GET,
        "/apps/7/channels/presence-room/users",
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(v, json!({"users":[{"id":"alice"},{"id":"bob"}]}));
    let e = call(&api, Method::GET, "/apps/7/channels/news/users", &[], "")
        .await
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn terminate_on_both_paths() {
    let api = api();
    let v = call(
        &api,
        Method::POST,
        "/apps/7/users/u%201/terminate_connections",
        &[],
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(v, json!({}));
    call(
        &api,
        Method::POST,
        "/users/u2/terminate_connections",
        &[],
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(*api.backend.terminated.lock().unwrap(), ["u 1", "u2"]);
}

#[tokio::test]
async fn refusals_have_pushers_statuses() {
    let api = api();
    let body = r#"{"name":"e","channel":"a","data":"d"}"#;
    let path = "/apps/7/events";
    // Unknown app: 404; unknown route: 404; wrong method: 405.
    let q = signed("POST", "/apps/8/events", &[], body.as_bytes(), "s7");
    let e = api
        .answer(&Method::POST, "/apps/8/events", &q, body.as_bytes(), NOW)
        .await
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::NOT_FOUND);
    assert!(route("/apps/7/nothing").is_none());
    let e = call(&api, Method::GET, path, &[], "").await.unwrap_err();
    assert_eq!(e.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Wrong secret, stale timestamp, body changed after signing: 401.
    let q = signed("POST", path, &[], body.as_bytes(), "not the secret");
    let e = api
        .answer(&Method::POST, path, &q, body.as_bytes(), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ApiError::Auth(AuthError::Signature { .. })),
        "{e}"
    );
    let q = signed("POST", path, &[], body.as_bytes(), "s7");
    let e = api
        .answer(&Method::POST, path, &q, body.as_bytes(), NOW + 601)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ApiError::Auth(AuthError::Expired { .. })),
        "{e}"
    );
    let other = r#"{"name":"e","channel":"b","data":"d"}"#;
    let e = api
        .answer(&Method::POST, path, &q, other.as_bytes(), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ApiError::Auth(AuthError::BodyMd5 { .. })),
        "{e}"
    );
    assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
    // Bad body: 400; data over the limit: 413.
    let e = call(&api, Method::POST, path, &[], r#"{"name":"e"}"#)
        .await
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    let big = json!({"name":"e","channel":"a","data":"x".repeat(1001)}).to_string();
    let e = call(&api, Method::POST, path, &[], &big).await.unwrap_err();
    assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(api.backend.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_event_with_info_counts_its_channels_in_one_call() {
    let api = api();
    let body = r#"{"name":"e","channels":["news","quiet","presence-room"],"data":"d","info":"subscription_count"}"#;
    let v = call(&api, Method::POST, "/apps/7/events", &[], body)
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"channels":{
            "news":{"subscription_count":3},
            "quiet":{"subscription_count":0},
            "presence-room":{"subscription_count":4},
        }})
    );
    let counted = api.backend.counted.lock().unwrap();
    assert_eq!(*counted, [vec!["news", "quiet", "presence-room"]]);
}

#[tokio::test]
async fn a_count_the_cluster_cannot_complete_is_a_503_never_a_smaller_number() {
    let api = api_over(Fake {
        no_census: true,
        ..Fake::default()
    });
    for (method, path, params, body) in [
        (Method::GET, "/apps/7/channels/news", vec![], ""),
        (
            Method::GET,
            "/apps/7/channels/news",
            vec![("info", "subscription_count")],
            "",
        ),
        (
            Method::POST,
            "/apps/7/events",
            vec![],
            r#"{"name":"e","channel":"news","data":"d","info":"subscription_count"}"#,
        ),
    ] {
        let e = call(&api, method, path, &params, body).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(e.kind(), "unavailable");
        assert!(e.to_string().contains("did not answer"), "{e}");
    }
    // The event itself was published before its info was asked for.
    assert_eq!(api.backend.published.lock().unwrap().len(), 1);
}
