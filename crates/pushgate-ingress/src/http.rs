//! The internal HTTP API, on its own port (default 8081), for publishers and operators.
//!
//! `POST /publish?all=true | channel=C (repeatable) | user=U (repeatable) | conn=ID (repeatable)`
//! with optional `exclude=ID` and `binary=true`; the body is the payload. A request
//! without a target is refused (400), never broadcast. The answer is
//! `{"enqueued":N,"nodes_accepted":K,"skipped":M}`: this node's connections, and the
//! nodes that took it (the field names of gRPC's `PublishReply`). With
//! `Prefer: respond-async` the answer is 202 `{"nodes_accepted":K}`, sent once the
//! publication is accepted, without waiting for this node's fan-out. With a cluster
//! broker that cannot reach Redis, 503 and nothing is published.
//! With `http_token` set, every request but the probes' and Prometheus' must carry
//! `Authorization: Bearer <token>` (401 otherwise).
//! An `Idempotency-Key` header makes a retry within the window answer the first
//! outcome (`"duplicate":true`) instead of publishing again; 504 says the outcome is
//! unknown (sent to Redis, not answered in time): retry with the same key. Every
//! refusal's status comes from [`Refusal`], which gRPC answers through too; more than
//! [`HttpLimits::max_in_flight`] publications at once get 429 (docs/http.md).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use pushgate_broker::{Accepted, Broker, Message, NodeConn, Target};
use pushgate_protocol::Payload;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::bearer::check_bearer;
use crate::guard::Gate;
use crate::mount::Mount;
use crate::refusal::Refusal;

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 256;

/// What the HTTP handlers share.
pub struct HttpState {
    pub broker: Broker,
    /// False while draining: `/readyz` answers 503 (as it does while the broker is down).
    pub ready: Arc<AtomicBool>,
    /// Renders the Prometheus exposition for `/metrics`.
    pub render_metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// Connections and deadlines of the port.
    pub limits: HttpLimits,
    /// Bearer token every request must carry, except `/livez`, `/readyz`,
    /// `/metrics` and the mounts' paths; empty: no authentication.
    pub token: String,
    /// Other APIs on this port (the Pusher HTTP API), tried before pushgate's routes.
    pub mounts: Vec<Arc<dyn Mount>>,
}

/// What bounds the internal HTTP port: a client reachable by mistake must not hold its
/// sockets, descriptors or tasks forever.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Most connections at once; beyond, new ones are closed at once. 0: no limit.
    pub max_connections: usize,
    /// Time a client has to send a complete request head (also the longest wait for
    /// the next request on a kept-alive connection).
    pub header_timeout: Duration,
    /// Time a client has to send a request body, once its head is read (408 beyond).
    pub body_timeout: Duration,
    /// A connection on which no byte moved for this long is closed.
    pub idle_timeout: Duration,
    /// Most publications in flight at once (body read, not yet answered); beyond,
    /// `POST /publish` is refused with 429 rather than queued without bound. It can
    /// only be reached when `max_connections` is above it or 0 (one request at a time
    /// per HTTP/1.1 connection).
    pub max_in_flight: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_in_flight: 4096,
        }
    }
}

/// Serves the internal API until `stop` is cancelled.
pub async fn serve_http(listener: TcpListener, state: Arc<HttpState>, stop: CancellationToken) {
    let limits = state.limits.clone();
    let gate = Gate::new("http", limits.max_connections, limits.idle_timeout);
    let header_timeouts =
        metrics::counter!("pushgate_internal_timeouts_total", "port" => "http", "kind" => "header");
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
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
        let Some(stream) = gate.admit(stream) else {
            continue; // the port is full: dropped, so closed at once
        };
        let state = state.clone();
        let stop = stop.clone();
        let header_timeouts = header_timeouts.clone();
        let header_timeout = limits.header_timeout;
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                let in_flight = in_flight.clone();
                async move {
                    let path = req.uri().path();
                    if let Some(m) = state.mounts.iter().find(|m| m.serves(path)).cloned() {
                        return Ok::<_, Infallible>(mounted(req, &*m, &state, &in_flight).await);
                    }
                    Ok(match unauthorized(&req, &state) {
                        Some(refused) => refused,
                        None => route(req, &state, &in_flight).await,
                    })
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if r.is_err_and(|e| e.is_timeout()) {
                        header_timeouts.increment(1);
                    }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

pub type Resp = Response<Full<Bytes>>;

/// The 401 answer to a request without the port's bearer token, if one is configured
/// and the path is not one of the open ones (probes and Prometheus). Every other path,
/// publishing first, needs it.
fn unauthorized(req: &Request<Incoming>, state: &HttpState) -> Option<Resp> {
    let path = req.uri().path();
    if state.token.is_empty() || matches!(path, "/livez" | "/readyz" | "/metrics") {
        return None;
    }
    let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    let e = check_bearer(header, state.token.as_bytes()).err()?;
    let label = if path == "/publish" {
        "/publish"
    } else {
        "other"
    };
    metrics::counter!("pushgate_http_requests_total", "path" => label, "status" => "401")
        .increment(1);
    let mut resp = error(StatusCode::UNAUTHORIZED, &e.to_string());
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer"),
    );
    Some(resp)
}

async fn route(req: Request<Incoming>, state: &HttpState, in_flight: &Semaphore) -> Resp {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let (label, resp) = match (req.method(), path.as_str()) {
        (&Method::POST, "/publish") => ("/publish", publish(req, state, in_flight).await),
        (&Method::GET, "/history") => (
            "/history",
            crate::history::history(req.uri().query().unwrap_or(""), &state.broker).await,
        ),
        (&Method::GET, "/presence") => (
            "/presence",
            crate::presence::presence(req.uri().query().unwrap_or(""), &state.broker).await,
        ),
        (&Method::GET, "/metrics") => ("/metrics", metrics_text((state.render_metrics)())),
        (&Method::GET, "/livez") => ("/livez", text(StatusCode::OK, "ok\n".into())),
        (&Method::GET, "/readyz") => (
            "/readyz",
            if !state.ready.load(Ordering::Acquire) {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: draining\n".into(),
                )
            } else if !state.broker.is_up() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {} broker unavailable\n", state.broker.kind()),
                )
            } else {
                text(StatusCode::OK, "ready\n".into())
            },
        ),
        (_, "/publish" | "/history" | "/presence" | "/metrics" | "/livez" | "/readyz") => (
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

/// A request for a mount: its body read within the mount's limit and the port's body
/// timeout, at most `max_in_flight` at once like publications, then handed over.
async fn mounted(
    req: Request<Incoming>,
    m: &dyn Mount,
    state: &HttpState,
    in_flight: &Semaphore,
) -> Resp {
    let started = Instant::now();
    let resp = match read_body(req, m.max_body(), state.limits.body_timeout).await {
        Err(refused) => refused,
        Ok((head, body)) => match in_flight.try_acquire() {
            Ok(_permit) => m.call(&head, body).await,
            Err(_) => overloaded(state.limits.max_in_flight),
        },
    };
    let label = m.label();
    let status = resp.status().as_u16().to_string();
    metrics::counter!("pushgate_http_requests_total", "path" => label, "status" => status)
        .increment(1);
    metrics::histogram!("pushgate_http_request_duration_seconds", "path" => label)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// A request's head and body, or the refusal: 408 if the body is slower than
/// `timeout`, 413 beyond `max` bytes, 400 if it cannot be read.
async fn read_body(
    req: Request<Incoming>,
    max: usize,
    timeout: Duration,
) -> Result<(hyper::http::request::Parts, Bytes), Resp> {
    let (head, body) = req.into_parts();
    let Ok(body) = tokio::time::timeout(timeout, Limited::new(body, max).collect()).await else {
        metrics::counter!("pushgate_internal_timeouts_total", "port" => "http", "kind" => "body")
            .increment(1);
        return Err(error(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "request body not received within {} ms",
                timeout.as_millis()
            ),
        ));
    };
    match body {
        Ok(b) => Ok((head, b.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            Refusal::TooLarge.http_status(),
            &format!("payload exceeds {max} bytes"),
        )),
        Err(_) => Err(error(
            Refusal::Invalid.http_status(),
            "could not read the body",
        )),
    }
}

/// 429 with `Retry-After`: `max` requests are in flight already.
fn overloaded(max: usize) -> Resp {
    let mut resp = error(
        Refusal::Overloaded.http_status(),
        &format!("gateway overloaded: {max} publications in flight; retry later"),
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
    resp
}

/// The target and options of a publish request, from its query string.
#[derive(Debug, Default, PartialEq)]
struct PublishQuery {
    target: Option<Target>,
    exclude: Option<NodeConn>,
    binary: bool,
}

fn parse_query(q: &str) -> Result<PublishQuery, String> {
    let (mut all, mut channels, mut users, mut conns) = (false, vec![], vec![], vec![]);
    let mut out = PublishQuery::default();
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
            "conn" => match NodeConn::parse(&v) {
                Some(c) => conns.push(c),
                None => return Err(format!("malformed connection id {v:?}")),
            },
            "exclude" => match NodeConn::parse(&v) {
                Some(c) => out.exclude = Some(c),
                None => return Err(format!("malformed connection id {v:?}")),
            },
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    let kinds = [
        all,
        !channels.is_empty(),
        !users.is_empty(),
        !conns.is_empty(),
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

async fn publish(req: Request<Incoming>, state: &HttpState, in_flight: &Semaphore) -> Resp {
    let invalid = Refusal::Invalid.http_status();
    let query = match parse_query(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(msg) => return error(invalid, &msg),
    };
    let idempotency_key = match req.headers().get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => Some(k.to_owned()),
        Some(_) => {
            return error(
                invalid,
                "Idempotency-Key must be 1-256 visible ASCII characters",
            )
        }
    };
    let respond_async = prefers_async(req.headers());
    let max = state.broker.hub().config().max_payload;
    let body = match read_body(req, max, state.limits.body_timeout).await {
        Ok((_, body)) => body,
        Err(refused) => return refused,
    };
    let payload = if query.binary {
        Payload::Binary(body)
    } else {
        match String::from_utf8(body.into()) {
            Ok(s) => Payload::Text(s),
            Err(_) => {
                return error(
                    invalid,
                    "body is not UTF-8; add binary=true for binary payloads",
                )
            }
        }
    };
    let m = Message {
        target: query.target.expect("parse_query sets a target"),
        payload,
        exclude: query.exclude,
        idempotency_key,
    };
    let Ok(_permit) = in_flight.try_acquire() else {
        return overloaded(state.limits.max_in_flight);
    };
    // With `Prefer: respond-async`, the outcome without this node's counts (None).
    let outcome = if respond_async {
        match state.broker.submit(m, "http").await {
            Ok(pending) => pending.accepted().await.map(|a| (None, a)),
            Err(e) => Err(e),
        }
    } else {
        let d = state.broker.publish(m, "http").await;
        d.map(|d| (Some(d.local), Accepted::from(d)))
    };
    match outcome {
        Ok((local, a)) => {
            let mut reply = json!({ "nodes_accepted": a.nodes });
            if let Some(local) = &local {
                reply["enqueued"] = local.enqueued.into();
                reply["skipped"] = local.skipped.into();
            }
            if !a.positions.is_empty() {
                reply["positions"] = crate::history::positions_json(&a.positions);
            }
            if a.duplicate {
                reply["duplicate"] = true.into();
            }
            if local.is_some() {
                return json_resp(StatusCode::OK, reply);
            }
            let mut resp = json_resp(StatusCode::ACCEPTED, reply);
            resp.headers_mut().insert(
                "preference-applied",
                hyper::header::HeaderValue::from_static("respond-async"),
            );
            resp
        }
        // The same classes and the same words as gRPC's (refusal.rs).
        Err(e) => error(Refusal::of_broker(&e).http_status(), &e.to_string()),
    }
}

/// Whether a `Prefer` header (RFC 7240) asks for `respond-async`: the publisher does
/// not need the connection counts, so the answer (202) comes once the publication is
/// accepted rather than once this node's shards have enqueued it.
fn prefers_async(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            let token = p.split(';').next().unwrap_or("").trim();
            token.eq_ignore_ascii_case("respond-async")
        })
}

/// Plain text for people and probes (`/livez`, `/readyz`).
fn text(status: StatusCode, body: String) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// The Prometheus text exposition format, version 0.0.4 (`/metrics`).
fn metrics_text(body: String) -> Resp {
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

pub(crate) fn json_resp(status: StatusCode, v: serde_json::Value) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("static response parts are valid")
}

pub(crate) fn error(status: StatusCode, msg: &str) -> Resp {
    json_resp(status, json!({ "error": msg }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_protocol::ConnId;

    fn nc(node: &str, id: u64) -> NodeConn {
        NodeConn {
            node: node.into(),
            id: ConnId(id),
        }
    }

    #[test]
    fn parses_each_target_kind() {
        assert_eq!(parse_query("all=true").unwrap().target, Some(Target::All));
        assert_eq!(
            parse_query("channel=a&channel=b&binary=true").unwrap(),
            PublishQuery {
                target: Some(Target::Channels(vec!["a".into(), "b".into()])),
                exclude: None,
                binary: true
            }
        );
        assert_eq!(
            parse_query("user=u%2042").unwrap().target,
            Some(Target::Users(vec!["u 42".into()]))
        );
        let q = parse_query("conn=n1-7&exclude=n1-8").unwrap();
        assert_eq!(q.target, Some(Target::Conns(vec![nc("n1", 7)])));
        assert_eq!(q.exclude, Some(nc("n1", 8)));
    }

    #[test]
    fn refuses_missing_mixed_and_malformed_targets() {
        assert!(parse_query("").unwrap_err().contains("no target"));
        assert!(parse_query("all=false").unwrap_err().contains("no target"));
        assert!(parse_query("all=true&channel=a")
            .unwrap_err()
            .contains("one kind"));
        assert!(parse_query("conn=garbage")
            .unwrap_err()
            .contains("malformed"));
        assert!(parse_query("chanel=a")
            .unwrap_err()
            .contains("unknown parameter"));
    }

    #[test]
    fn prefer_respond_async_is_found_among_other_preferences() {
        let prefers = |values: &[&str]| {
            let mut h = hyper::HeaderMap::new();
            for v in values {
                h.append("prefer", v.parse().unwrap());
            }
            prefers_async(&h)
        };
        assert!(prefers(&["respond-async"]));
        assert!(prefers(&["return=minimal, Respond-Async; wait=0"]));
        assert!(prefers(&["return=minimal", "respond-async"]));
        assert!(!prefers(&[]));
        assert!(!prefers(&["return=minimal"]));
        assert!(!prefers(&["respond-asynchronously"]));
    }

    #[test]
    fn a_connection_on_another_node_is_a_valid_target() {
        assert_eq!(
            parse_query("conn=n2-7").unwrap().target,
            Some(Target::Conns(vec![nc("n2", 7)]))
        );
    }
}
