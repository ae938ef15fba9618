//! The Pusher HTTP API, signed exactly like Pusher's (docs/pusher.md, "HTTP API"),
//! mounted on the internal HTTP port:
//!
//! | route | answer |
//! |---|---|
//! | `POST /apps/{id}/events` | `{}`, or `{"channels":{..}}` with `info` |
//! | `POST /apps/{id}/batch_events` | `{}`, or `{"batch":[..]}` with `info` |
//! | `GET /apps/{id}/channels?filter_by_prefix=&info=` | `{"channels":{name:{..}}}` |
//! | `GET /apps/{id}/channels/{name}?info=` | `{"occupied":b, ..}` |
//! | `GET /apps/{id}/channels/{name}/users` | `{"users":[{"id":..}]}` |
//! | `POST /apps/{id}/users/{user}/terminate_connections` | `{}` |
//!
//! `POST /users/{user}/terminate_connections` (no app in the path, the app named by
//! `auth_key`) is taken too: it is where the Python SDK 3.3 sends it.
//!
//! - `signature`: the request signature, the body MD5, the timestamp window.
//! - `events`: the bodies of `events` and `batch_events`, checked with Pusher's limits.
//! - `info`: the `info=` attribute lists.
//! - `names`: Pusher's channel, socket id and user id rules.
//! - `backend`: what the API asks of the gateway ([`Backend`]); `over_pusher`: it,
//!   over the node's [`crate::Pusher`].
//! - `error`: every refusal and its status.

mod backend;
mod error;
mod events;
mod info;
mod names;
mod over_pusher;
mod signature;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use pushgate_ingress::{Mount, MountFuture, Resp};
use serde_json::{json, Map, Value};

pub use backend::{Backend, BackendError, Event};
pub use error::{ApiError, Invalid};
pub use signature::{body_md5, sign, AuthError, SignedQuery};

use crate::{PusherApp, PusherApps};
use events::{parse_batch, parse_trigger, Trigger, MAX_BATCH};
use info::Info;
use names::{is_presence, valid_channel, valid_user_id};

/// The HTTP API of a node's apps over a [`Backend`].
pub struct PusherApi<B> {
    apps: Arc<PusherApps>,
    backend: B,
    /// Largest `data` of one event (the hub's `max_payload`).
    max_data: usize,
}

/// One routed request: which app (by id, or by key for the short terminate path)
/// and what it asks.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Events,
    BatchEvents,
    Channels,
    Channel(Cow<'a, str>),
    Users(Cow<'a, str>),
    Terminate(Cow<'a, str>),
}

impl<B: Backend> PusherApi<B> {
    pub fn new(apps: Arc<PusherApps>, backend: B, max_data: usize) -> Self {
        PusherApi {
            apps,
            backend,
            max_data,
        }
    }

    /// Answers one request at Unix time `now` (seconds): the JSON of a 200, or the
    /// refusal.
    pub async fn answer(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Value, ApiError> {
        let (app_id, route) = route(path).ok_or(ApiError::NoRoute)?;
        let wanted = match route {
            Route::Events | Route::BatchEvents | Route::Terminate(_) => Method::POST,
            _ => Method::GET,
        };
        if *method != wanted {
            return Err(ApiError::Method);
        }
        let q = SignedQuery::parse(query)?;
        let app = match app_id {
            Some(id) => self
                .apps
                .by_id(&id)
                .ok_or_else(|| ApiError::UnknownApp(id.into_owned()))?,
            None => self.apps.by_key(q.key()).ok_or(AuthError::UnknownKey)?,
        };
        let check = |p: &str| q.verify(&app.key, &app.secret, method.as_str(), p, body, now);
        if let Err(e) = check(path) {
            // An SDK may sign the path before percent-encoding it (a user id with a
            // space): the decoded path is what it signed then.
            let decoded = percent_decode(path);
            if !matches!(e, AuthError::Signature { .. })
                || decoded == path
                || check(&decoded).is_err()
            {
                return Err(e.into());
            }
        }
        match route {
            Route::Events => {
                let t = parse_trigger(body, self.max_data)?;
                let answer = self.publish(app, vec![t]).await?;
                Ok(answer
                    .into_iter()
                    .next()
                    .map_or(json!({}), |c| json!({ "channels": c })))
            }
            Route::BatchEvents => {
                let batch = parse_batch(body, self.max_data)?;
                let answer = self.publish(app, batch).await?;
                Ok(if answer.is_empty() {
                    json!({})
                } else {
                    json!({ "batch": answer })
                })
            }
            Route::Channels => self.channels(app, &q).await,
            Route::Channel(name) => self.channel(app, &name, &q).await,
            Route::Users(name) => self.users(app, &name).await,
            Route::Terminate(user) => {
                if !valid_user_id(&user) {
                    return Err(Invalid::UserId(user.into_owned()).into());
                }
                self.backend.terminate(app, &user).await?;
                Ok(json!({}))
            }
        }
    }

    /// Publishes checked events in order. When any asked for `info`, the answer has
    /// one object of attributes per channel for each event (empty for those that did
    /// not ask); otherwise it is empty.
    async fn publish(
        &self,
        app: &PusherApp,
        triggers: Vec<Trigger>,
    ) -> Result<Vec<Map<String, Value>>, ApiError> {
        let any_info = triggers.iter().any(|t| !t.info.is_empty());
        let mut answer = Vec::new();
        for t in triggers {
            let channels = (!t.info.is_empty()).then(|| t.event.channels.clone());
            self.backend.publish(app, t.event).await?;
            metrics::counter!("pushgate_pusher_api_events_total").increment(1);
            if !any_info {
                continue;
            }
            let mut per_channel = Map::new();
            let channels = channels.unwrap_or_default();
            // One count for every channel of the event (a census, with Redis).
            let counts = match t.info.subscription_count && !channels.is_empty() {
                true => self.backend.subscriptions(app, &channels).await?,
                false => vec![0; channels.len()],
            };
            for (c, n) in channels.into_iter().zip(counts) {
                let attrs = self.attributes(app, &c, t.info, n).await?;
                per_channel.insert(c, Value::Object(attrs));
            }
            answer.push(per_channel);
        }
        Ok(answer)
    }

    async fn channels(&self, app: &PusherApp, q: &SignedQuery) -> Result<Value, ApiError> {
        let prefix = q.get("filter_by_prefix").unwrap_or("");
        let info = Info::parse(q.get("info").unwrap_or(""))?;
        if info.user_count && !is_presence(prefix) {
            return Err(Invalid::UserCountNotPresence.into());
        }
        let mut channels = Map::new();
        for (name, n) in self.backend.channels(app, prefix).await? {
            if name.starts_with(prefix) && n > 0 {
                let attrs = self.attributes(app, &name, info, n).await?;
                channels.insert(name, Value::Object(attrs));
            }
        }
        Ok(json!({ "channels": channels }))
    }

    async fn channel(
        &self,
        app: &PusherApp,
        name: &str,
        q: &SignedQuery,
    ) -> Result<Value, ApiError> {
        if !valid_channel(name) {
            return Err(Invalid::ChannelName(name.into()).into());
        }
        let info = Info::parse(q.get("info").unwrap_or(""))?;
        if info.user_count && !is_presence(name) {
            return Err(Invalid::UserCountNotPresence.into());
        }
        let counts = self
            .backend
            .subscriptions(app, std::slice::from_ref(&name.to_owned()))
            .await?;
        let n = counts.first().copied().unwrap_or(0);
        let mut m = self.attributes(app, name, info, n).await?;
        m.insert("occupied".into(), (n > 0).into());
        Ok(Value::Object(m))
    }

    /// The `info` attributes of one channel whose subscription count is `n`.
    async fn attributes(
        &self,
        app: &PusherApp,
        channel: &str,
        info: Info,
        n: u64,
    ) -> Result<Map<String, Value>, ApiError> {
        let users = async {
            if !is_presence(channel) {
                return Ok(0);
            }
            Ok::<_, BackendError>(self.backend.users(app, channel).await?.len() as u64)
        };
        Ok(info.render(n, users).await?)
    }

    async fn users(&self, app: &PusherApp, name: &str) -> Result<Value, ApiError> {
        if !valid_channel(name) {
            return Err(Invalid::ChannelName(name.into()).into());
        }
        if !is_presence(name) {
            return Err(Invalid::NotPresence(name.into()).into());
        }
        let users: Vec<Value> = self
            .backend
            .users(app, name)
            .await?
            .into_iter()
            .map(|id| json!({ "id": id }))
            .collect();
        Ok(json!({ "users": users }))
    }
}

/// The app id (if the path names one) and the route of a path; `None`: not ours.
fn route(path: &str) -> Option<(Option<Cow<'_, str>>, Route<'_>)> {
    let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let dec = |s| decode_segment(s).filter(|v| !v.is_empty());
    Some(match parts.as_slice() {
        ["users", user, "terminate_connections"] => (None, Route::Terminate(dec(user)?)),
        ["apps", id, rest @ ..] => {
            let id = dec(id)?;
            let r = match rest {
                ["events"] => Route::Events,
                ["batch_events"] => Route::BatchEvents,
                ["channels"] => Route::Channels,
                ["channels", name] => Route::Channel(dec(name)?),
                ["channels", name, "users"] => Route::Users(dec(name)?),
                ["users", user, "terminate_connections"] => Route::Terminate(dec(user)?),
                _ => return None,
            };
            (Some(id), r)
        }
        _ => return None,
    })
}

/// Percent-decodes one path segment; `None` if the result is not UTF-8.
fn decode_segment(s: &str) -> Option<Cow<'_, str>> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok()
}

/// The whole path percent-decoded (for the second signature attempt).
fn percent_decode(path: &str) -> String {
    path.split('/')
        .map(|s| decode_segment(s).map_or_else(|| s.to_owned(), Cow::into_owned))
        .collect::<Vec<_>>()
        .join("/")
}

/// Seconds since the Unix epoch on this node's clock.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl<B: Backend> Mount for PusherApi<B> {
    fn serves(&self, path: &str) -> bool {
        path.starts_with("/apps/")
            || (path.starts_with("/users/") && path.ends_with("/terminate_connections"))
    }

    fn max_body(&self) -> usize {
        // A full batch of full events, with room for names, channels and JSON.
        MAX_BATCH * (self.max_data + 16 * 1024)
    }

    fn label(&self) -> &'static str {
        "pusher"
    }

    fn call<'a>(&'a self, head: &'a Parts, body: Bytes) -> MountFuture<'a> {
        Box::pin(async move {
            let path = head.uri.path();
            let query = head.uri.query().unwrap_or("");
            match self
                .answer(&head.method, path, query, &body, unix_now())
                .await
            {
                Ok(v) => reply(StatusCode::OK, "application/json", v.to_string()),
                Err(e) => {
                    metrics::counter!("pushgate_pusher_api_refusals_total", "kind" => e.kind())
                        .increment(1);
                    reply(e.status(), "text/plain; charset=utf-8", format!("{e}\n"))
                }
            }
        })
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests;
