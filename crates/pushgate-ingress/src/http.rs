//! The internal HTTP API, on its own port (default 8081), for publishers and operators.
//!
//! `POST /publish?all=true | channel=C (repeatable) | user=U (repeatable) | conn=ID (repeatable)`
//! with optional `exclude=ID` and `binary=true`; the body is the payload. A request
//! without a target is refused (400), never broadcast. The answer is
//! `{"enqueued":N,"skipped":M}` for this node's connections.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pushgate_hub::{Hub, Publication, PublishError, Target};
use pushgate_protocol::{ConnId, Payload};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the HTTP handlers share.
pub struct HttpState {
    pub hub: Hub,
    /// False while starting or draining: `/readyz` answers 503.
    pub ready: Arc<AtomicBool>,
    /// Renders the Prometheus exposition for `/metrics`.
    pub render_metrics: Box<dyn Fn() -> String + Send + Sync>,
}

/// Serves the internal API until `stop` is cancelled.
pub async fn serve_http(listener: TcpListener, state: Arc<HttpState>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "internal HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(req, &state).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

type Resp = Response<Full<Bytes>>;

async fn route(req: Request<Incoming>, state: &HttpState) -> Resp {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let (label, resp) = match (req.method(), path.as_str()) {
        (&Method::POST, "/publish") => ("/publish", publish(req, state).await),
        (&Method::GET, "/metrics") => ("/metrics", text(StatusCode::OK, (state.render_metrics)())),
        (&Method::GET, "/livez") => ("/livez", text(StatusCode::OK, "ok\n".into())),
        (&Method::GET, "/readyz") => (
            "/readyz",
            if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into())
            },
        ),
        (_, "/publish" | "/metrics" | "/livez" | "/readyz") => (
            "other",
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        ),
        _ => ("other", error(StatusCode::NOT_FOUND, "not found")),
    };
    let status = resp.status().as_u16().to_string();
    metrics::counter!("pushgate_http_requests_total", "path" => label, "status" => status.clone())
        .increment(1);
    metrics::histogram!("pushgate_http_request_duration_seconds", "path" => label)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// The target and options of a publish request, from its query string.
#[derive(Debug, Default, PartialEq)]
struct PublishQuery {
    target: Option<Target>,
    exclude: Option<ConnId>,
    binary: bool,
}

fn parse_query(q: &str, hub: &Hub) -> Result<PublishQuery, String> {
    let (mut all, mut channels, mut users, mut conns) = (false, vec![], vec![], vec![]);
    let mut out = PublishQuery::default();
    let mut foreign_conns = 0usize;
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        match k.as_ref() {
            "all" => all = parse_bool(&v).ok_or("all must be true or false")?,
            "binary" => out.binary = parse_bool(&v).ok_or("binary must be true or false")?,
            "channel" => channels.push(v.into_owned()),
            "user" => {
                if v.is_empty() {
                    return Err("user must not be empty".into());
                }
                users.push(v.into_owned())
            }
            "conn" => match hub.local_conn(&v) {
                Some(id) => conns.push(id),
                None if ConnId::parse(&v).is_some() => foreign_conns += 1,
                None => return Err(format!("malformed connection id {v:?}")),
            },
            "exclude" => match hub.local_conn(&v) {
                Some(id) => out.exclude = Some(id),
                None if ConnId::parse(&v).is_some() => {}
                None => return Err(format!("malformed connection id {v:?}")),
            },
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    let kinds = [
        all,
        !channels.is_empty(),
        !users.is_empty(),
        !conns.is_empty() || foreign_conns > 0,
    ];
    match kinds.iter().filter(|k| **k).count() {
        0 => return Err("no target: add all=true, channel=, user= or conn=".into()),
        1 => {}
        _ => return Err("choose one kind of target: all, channel, user or conn".into()),
    }
    out.target = Some(if all {
        Target::All
    } else if !channels.is_empty() {
        Target::Channels(channels)
    } else if !users.is_empty() {
        Target::Users(users)
    } else {
        Target::Conns(conns)
    });
    Ok(out)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "1" | "" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

async fn publish(req: Request<Incoming>, state: &HttpState) -> Resp {
    let query = match parse_query(req.uri().query().unwrap_or(""), &state.hub) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let max = state.hub.config().max_payload;
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("payload exceeds {max} bytes"),
            )
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "could not read the body"),
    };
    let payload = if query.binary {
        Payload::Binary(body)
    } else {
        match String::from_utf8(body.into()) {
            Ok(s) => Payload::Text(s),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "body is not UTF-8; add binary=true for binary payloads",
                )
            }
        }
    };
    let target = query.target.expect("parse_query sets a target");
    if target == Target::Conns(vec![]) {
        // Only connections of other nodes were named: nothing to do here.
        return json_resp(StatusCode::OK, json!({"enqueued": 0, "skipped": 0}));
    }
    let p = Publication {
        target,
        payload,
        exclude: query.exclude,
    };
    match state.hub.publish(p, "http").await {
        Ok(r) => json_resp(
            StatusCode::OK,
            json!({"enqueued": r.enqueued, "skipped": r.skipped}),
        ),
        Err(e @ PublishError::TooLarge(..)) => error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()),
        Err(e @ PublishError::ShuttingDown) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn text(status: StatusCode, body: String) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn json_resp(status: StatusCode, v: serde_json::Value) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("static response parts are valid")
}

fn error(status: StatusCode, msg: &str) -> Resp {
    json_resp(status, json!({ "error": msg }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_hub::HubConfig;

    fn hub() -> Hub {
        Hub::new(HubConfig {
            shards: 1,
            node_id: "n1".into(),
            ..Default::default()
        })
    }

    #[test]
    fn parses_each_target_kind() {
        let h = hub();
        assert_eq!(
            parse_query("all=true", &h).unwrap().target,
            Some(Target::All)
        );
        assert_eq!(
            parse_query("channel=a&channel=b&binary=true", &h).unwrap(),
            PublishQuery {
                target: Some(Target::Channels(vec!["a".into(), "b".into()])),
                exclude: None,
                binary: true
            }
        );
        assert_eq!(
            parse_query("user=u%2042", &h).unwrap().target,
            Some(Target::Users(vec!["u 42".into()]))
        );
        let q = parse_query("conn=n1-7&exclude=n1-8", &h).unwrap();
        assert_eq!(q.target, Some(Target::Conns(vec![ConnId(7)])));
        assert_eq!(q.exclude, Some(ConnId(8)));
    }

    #[test]
    fn refuses_missing_mixed_and_malformed_targets() {
        let h = hub();
        assert!(parse_query("", &h).unwrap_err().contains("no target"));
        assert!(parse_query("all=false", &h)
            .unwrap_err()
            .contains("no target"));
        assert!(parse_query("all=true&channel=a", &h)
            .unwrap_err()
            .contains("one kind"));
        assert!(parse_query("conn=garbage", &h)
            .unwrap_err()
            .contains("malformed"));
        assert!(parse_query("chanel=a", &h)
            .unwrap_err()
            .contains("unknown parameter"));
    }

    #[test]
    fn a_connection_on_another_node_is_a_valid_target_with_no_local_recipient() {
        let h = hub();
        assert_eq!(
            parse_query("conn=n2-7", &h).unwrap().target,
            Some(Target::Conns(vec![]))
        );
    }
}
