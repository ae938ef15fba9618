//! The `# HELP` line and unit of every metric the node exports, in one place: a new
//! metric gets its line here (a test fails on a metric without one). The same words
//! as docs/metrics.md, shorter.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Describes every metric to the installed recorder; call once, after installing it.
pub fn describe() {
    crate::process_metrics::describe();
    describe_gauge!(
        "pushgate_build_info",
        "Always 1; the version label is the build's."
    );

    // Connections and subscriptions, per shard.
    describe_gauge!(
        "pushgate_connections",
        Unit::Count,
        "Open client connections (WebSocket and SSE)."
    );
    describe_gauge!(
        "pushgate_sse_connections",
        Unit::Count,
        "Open Server-Sent Events streams (also counted in pushgate_connections)."
    );
    describe_gauge!(
        "pushgate_protocol_connections",
        Unit::Count,
        "Open connections of a second protocol (protocol=\"pusher\"; also counted in pushgate_connections)."
    );
    describe_counter!(
        "pushgate_connections_opened_total",
        Unit::Count,
        "Client connections registered (WebSocket and SSE)."
    );
    describe_counter!(
        "pushgate_connections_closed_total",
        Unit::Count,
        "Client connections closed (WebSocket and SSE), by reason."
    );
    describe_gauge!(
        "pushgate_subscriptions",
        Unit::Count,
        "Channel subscriptions of this shard's connections."
    );
    describe_gauge!(
        "pushgate_channels",
        Unit::Count,
        "Channels with at least one subscriber on the shard."
    );

    // Publications and the fan-out.
    describe_counter!(
        "pushgate_publications_total",
        Unit::Count,
        "Publications accepted, by target kind and source."
    );
    describe_counter!(
        "pushgate_deliveries_total",
        Unit::Count,
        "Frames enqueued to connections."
    );
    describe_counter!(
        "pushgate_sse_deliveries_total",
        Unit::Count,
        "Publication events enqueued to SSE streams (also counted in pushgate_deliveries_total)."
    );
    describe_counter!(
        "pushgate_protocol_deliveries_total",
        Unit::Count,
        "Publication frames enqueued to connections of a second protocol (protocol=\"pusher\"; also counted in pushgate_deliveries_total)."
    );
    describe_counter!(
        "pushgate_pusher_errors_total",
        Unit::Count,
        "Pusher connections refused or sent pusher:error, by Pusher code (4100 over capacity, 4301 client-event rate)."
    );
    describe_counter!(
        "pushgate_pusher_auth_refused_total",
        Unit::Count,
        "Pusher subscriptions and sign-ins refused for a missing, malformed or forged signature."
    );
    describe_counter!(
        "pushgate_pusher_client_events_total",
        Unit::Count,
        "Pusher client events accepted for publication."
    );
    describe_counter!(
        "pushgate_pusher_api_events_total",
        Unit::Count,
        "Events published through the Pusher HTTP API (events and batch_events)."
    );
    describe_counter!(
        "pushgate_pusher_api_refusals_total",
        Unit::Count,
        "Pusher HTTP API requests refused, by kind (signature, timestamp, body_md5, auth, unknown_app, invalid, too_large, route, unavailable)."
    );
    describe_counter!(
        "pushgate_pusher_webhook_requests_total",
        Unit::Count,
        "Pusher webhook POSTs, by app and outcome (ok, retry)."
    );
    describe_counter!(
        "pushgate_pusher_webhook_events_failed_total",
        Unit::Count,
        "Pusher webhook events dropped after their batch's last attempt failed, by app."
    );
    describe_counter!(
        "pushgate_pusher_webhook_events_dropped_total",
        Unit::Count,
        "Pusher webhook events dropped because the app's queue was full, by app."
    );
    describe_counter!(
        "pushgate_bytes_written_total",
        Unit::Bytes,
        "Bytes written to client sockets."
    );

    // permessage-deflate: one compression per publication, shared by its recipients.
    describe_counter!(
        "pushgate_compressed_frames_total",
        Unit::Count,
        "Publication frames compressed (once each, for every recipient with permessage-deflate)."
    );
    describe_counter!(
        "pushgate_compression_bytes_in_total",
        Unit::Bytes,
        "Bytes of the frames compressed, before compression (headers included)."
    );
    describe_counter!(
        "pushgate_compression_bytes_out_total",
        Unit::Bytes,
        "Bytes of the same frames compressed (headers included)."
    );
    describe_histogram!(
        "pushgate_write_batch_frames",
        Unit::Count,
        "Frames handed to a connection's writer at once (one vectored write unless the socket fills)."
    );
    describe_counter!(
        "pushgate_slow_consumer_disconnects_total",
        Unit::Count,
        "Connections closed because their outbound queue filled."
    );
    describe_counter!(
        "pushgate_outbound_dropped_total",
        Unit::Count,
        "Messages dropped for a slow client (drop_newest policy)."
    );
    describe_counter!(
        "pushgate_heartbeat_reaped_total",
        Unit::Count,
        "Connections closed for silence (heartbeat timeout)."
    );
    describe_histogram!(
        "pushgate_fanout_duration_seconds",
        Unit::Seconds,
        "Time from a publication accepted to the last shard having enqueued it."
    );

    // The edge: handshakes, limits, accept.
    describe_counter!(
        "pushgate_handshake_refused_total",
        Unit::Count,
        "WebSocket upgrades refused, by HTTP status."
    );
    describe_counter!(
        "pushgate_limit_rejections_total",
        Unit::Count,
        "Requests refused by a configured limit, by limit."
    );
    describe_counter!(
        "pushgate_accept_errors_total",
        Unit::Count,
        "Failed accepts on the WebSocket port, by kind (fd_exhausted: out of descriptors)."
    );

    // The internal APIs.
    describe_counter!(
        "pushgate_http_requests_total",
        Unit::Count,
        "Internal HTTP API requests, by path and status."
    );
    describe_histogram!(
        "pushgate_http_request_duration_seconds",
        Unit::Seconds,
        "Internal HTTP API request duration, by path."
    );
    describe_counter!(
        "pushgate_grpc_requests_total",
        Unit::Count,
        "gRPC ingress calls, by method and status code."
    );
    describe_histogram!(
        "pushgate_grpc_request_duration_seconds",
        Unit::Seconds,
        "gRPC call duration, by method (PublishStream: until the stream is set up)."
    );

    describe_counter!(
        "pushgate_grpc_idempotency_evicted_total",
        Unit::Count,
        "gRPC idempotency keys forgotten before the end of the window because it was full."
    );

    describe_gauge!(
        "pushgate_grpc_idempotency_bytes",
        Unit::Bytes,
        "Bytes the gRPC idempotency window holds (estimated; bounded by grpc_idempotency_max_bytes)."
    );

    describe_counter!(
        "pushgate_publications_refused_total",
        Unit::Count,
        "Publications refused before anything was published, by reason."
    );
    describe_gauge!(
        "pushgate_internal_connections",
        Unit::Count,
        "Open connections on the internal http and grpc ports."
    );
    describe_counter!(
        "pushgate_internal_connections_refused_total",
        Unit::Count,
        "Internal connections closed at once because the port had internal_max_connections open."
    );
    describe_counter!(
        "pushgate_internal_timeouts_total",
        Unit::Count,
        "Internal connections closed by a deadline, by port and kind (header, body, idle)."
    );

    // The Redis broker (broker = "redis").
    describe_gauge!(
        "pushgate_broker_up",
        "1 while both Redis connections are up, the initial subscriptions confirmed, and Redis answers within redis_timeout_ms."
    );
    describe_counter!(
        "pushgate_broker_published_total",
        Unit::Count,
        "Messages this node put on the bus."
    );
    describe_counter!(
        "pushgate_broker_round_trips_total",
        Unit::Count,
        "Redis round trips of the publisher connection."
    );
    describe_counter!(
        "pushgate_broker_publish_errors_total",
        Unit::Count,
        "Publications that failed, by outcome: refused (delivered nowhere) or uncertain (sent, not answered in time)."
    );
    describe_counter!(
        "pushgate_broker_history_syncs_total",
        Unit::Count,
        "Reads of a history channel's stream from Redis, by result (installed, filled, unchanged, reset)."
    );
    describe_counter!(
        "pushgate_broker_history_gap_publications_total",
        Unit::Count,
        "Publications missed on the bus and delivered from the Redis stream."
    );
    describe_counter!(
        "pushgate_broker_received_total",
        Unit::Count,
        "Bus messages handed to this node (from other nodes; history and keyed ones from every node), by target kind."
    );
    describe_counter!(
        "pushgate_broker_echoes_total",
        Unit::Count,
        "This node's own publications back from Redis, ignored."
    );
    describe_counter!(
        "pushgate_broker_undecodable_total",
        Unit::Count,
        "Bus messages that could not be read."
    );
    describe_gauge!(
        "pushgate_broker_subscriptions",
        Unit::Count,
        "Redis keys this node follows."
    );
    describe_counter!(
        "pushgate_broker_reconnects_total",
        Unit::Count,
        "Reconnections to Redis, by connection (publisher, subscriber)."
    );
    describe_counter!(
        "pushgate_broker_census_total",
        Unit::Count,
        "Cluster-wide channel counts this node asked for, by outcome (complete, incomplete, refused, too_many)."
    );
    describe_counter!(
        "pushgate_broker_census_missing_total",
        Unit::Count,
        "Nodes that heard a channel count of this node and did not answer it in time."
    );
    describe_counter!(
        "pushgate_broker_census_answers_total",
        Unit::Count,
        "Channel counts of other nodes this node answered."
    );
    describe_counter!(
        "pushgate_broker_census_late_total",
        Unit::Count,
        "Answers to channel counts that arrived after their asker stopped waiting."
    );

    // Channel history.
    describe_gauge!(
        "pushgate_history_bytes",
        Unit::Bytes,
        "Bytes the channel history of this node holds (bounded by history_max_bytes)."
    );
    describe_gauge!(
        "pushgate_history_streams",
        Unit::Count,
        "History channels with a stream on this node."
    );
    describe_counter!(
        "pushgate_history_evictions_total",
        Unit::Count,
        "Evicted for the memory bound: whole streams nobody followed, or kept publications of followed ones."
    );
    describe_counter!(
        "pushgate_history_expired_total",
        Unit::Count,
        "Kept publications dropped because they outlived their rule's ttl."
    );
    describe_counter!(
        "pushgate_history_recoveries_total",
        Unit::Count,
        "Subscribes with a position, by result (recovered, unrecovered)."
    );
    describe_counter!(
        "pushgate_history_resets_total",
        Unit::Count,
        "History streams started over, their subscribers told unrecoverable (cluster)."
    );

    // Channel history through Redis.
    describe_counter!(
        "pushgate_broker_history_syncs_total",
        Unit::Count,
        "Reads of a history channel's stream from Redis, by result."
    );
    describe_counter!(
        "pushgate_broker_history_gap_publications_total",
        Unit::Count,
        "Publications missed on the bus and delivered from the Redis stream."
    );

    // Presence.
    describe_counter!(
        "pushgate_presence_joins_total",
        Unit::Count,
        "Connections of this node that joined a presence channel."
    );
    describe_counter!(
        "pushgate_presence_leaves_total",
        Unit::Count,
        "Connections of this node that left a presence channel (unsubscribed or closed)."
    );
    describe_gauge!(
        "pushgate_presence_members",
        Unit::Count,
        "Memberships of this node's connections in presence channels."
    );
    describe_counter!(
        "pushgate_presence_events_sent_total",
        Unit::Count,
        "Join and leave events queued to this node's watchers."
    );
    describe_counter!(
        "pushgate_broker_presence_refreshes_total",
        Unit::Count,
        "Times this node put all its presence members into Redis again (every presence_ttl_ms / 3, and after a reconnection)."
    );
    describe_counter!(
        "pushgate_broker_presence_errors_total",
        Unit::Count,
        "Presence joins and leaves not written to Redis, and presence round trips that failed."
    );
    describe_counter!(
        "pushgate_broker_occupancy_refreshes_total",
        Unit::Count,
        "Times this node put its Pusher channel occupancy entries into Redis again and swept expired ones (every presence_ttl_ms / 3, and after a reconnection)."
    );
    describe_counter!(
        "pushgate_broker_occupancy_errors_total",
        Unit::Count,
        "Occupancy operations (occupy, vacate, refresh, sweep) Redis did not take, and failed connections of the occupancy task."
    );
}
