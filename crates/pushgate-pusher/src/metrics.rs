//! The Pusher surface's own counters (the connections, deliveries and closes are the
//! hub's and the edge's, with `protocol="pusher"` where they differ: docs/metrics.md).

/// A connection refused or sent a `pusher:error` with `code`.
pub(crate) fn refused(code: u16) {
    metrics::counter!("pushgate_pusher_errors_total", "code" => code.to_string()).increment(1);
}

/// A subscription refused for its signature (missing, malformed or forged).
pub(crate) fn auth_refused() {
    metrics::counter!("pushgate_pusher_auth_refused_total").increment(1);
}

/// A client event accepted for publication.
pub(crate) fn client_event() {
    metrics::counter!("pushgate_pusher_client_events_total").increment(1);
}
