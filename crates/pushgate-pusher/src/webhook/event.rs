//! One webhook event, in Pusher's JSON shape.

use serde::Serialize;

/// What happened, as a webhook's `events` list carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum WebhookEvent {
    /// The channel got its first subscriber.
    ChannelOccupied { channel: String },
    /// The channel lost its last subscriber.
    ChannelVacated { channel: String },
    /// A user's first connection joined a presence channel.
    MemberAdded { channel: String, user_id: String },
    /// A user's last connection left a presence channel.
    MemberRemoved { channel: String, user_id: String },
    /// A client sent a `client-*` event on a private or presence channel.
    ClientEvent {
        channel: String,
        event: String,
        data: String,
        socket_id: String,
        /// The sender's user id, on presence channels.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
}

impl WebhookEvent {
    /// The name `webhook_events` selects it by.
    pub fn name(&self) -> &'static str {
        match self {
            WebhookEvent::ChannelOccupied { .. } => "channel_occupied",
            WebhookEvent::ChannelVacated { .. } => "channel_vacated",
            WebhookEvent::MemberAdded { .. } => "member_added",
            WebhookEvent::MemberRemoved { .. } => "member_removed",
            WebhookEvent::ClientEvent { .. } => "client_event",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pusher_shapes() {
        let v = |e: &WebhookEvent| serde_json::to_value(e).unwrap();
        assert_eq!(
            v(&WebhookEvent::ChannelOccupied {
                channel: "c".into()
            }),
            json!({"name":"channel_occupied","channel":"c"})
        );
        assert_eq!(
            v(&WebhookEvent::MemberRemoved {
                channel: "presence-c".into(),
                user_id: "u".into()
            }),
            json!({"name":"member_removed","channel":"presence-c","user_id":"u"})
        );
        let e = WebhookEvent::ClientEvent {
            channel: "private-c".into(),
            event: "client-x".into(),
            data: "{}".into(),
            socket_id: "1.2".into(),
            user_id: None,
        };
        assert_eq!(
            v(&e),
            json!({"name":"client_event","channel":"private-c","event":"client-x","data":"{}","socket_id":"1.2"})
        );
        assert_eq!(e.name(), "client_event");
    }
}
