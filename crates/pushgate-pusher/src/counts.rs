//! Channel lists and subscription counts of an app, cluster-wide: the broker's census
//! (every node's subscribers summed, through Redis with `broker = "redis"`; this
//! node's own with the in-process broker). A count either includes every node that
//! follows the bus or fails (503): docs/pusher.md, "Node-level and cluster-wide".

use pushgate_broker::CensusQuery;

use crate::app::PusherApp;
use crate::channel;
use crate::service::{ChannelInfo, Pusher, PusherError, MAX_TRIGGER_CHANNELS};

impl Pusher {
    /// The occupied channels of `app` whose name starts with `prefix` (Pusher's
    /// `filter_by_prefix`), by name, with their subscribers on every node.
    pub async fn channels(
        &self,
        app: &PusherApp,
        prefix: &str,
    ) -> Result<Vec<ChannelInfo>, PusherError> {
        let q = CensusQuery::Prefix(channel::prefix_to_pushgate(&app.id, prefix));
        let census = self.broker().census(q).await?;
        let mut out: Vec<ChannelInfo> = census
            .channels
            .into_iter()
            .filter_map(|(pg, n)| {
                let (app_id, name) = channel::from_pushgate(&pg)?;
                (app_id == app.id && name.starts_with(prefix)).then_some(ChannelInfo {
                    name,
                    subscription_count: n as usize,
                })
            })
            .collect();
        // The census is in mapped-name order; escapes can change the order.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Subscribers of one channel of `app`, on every node.
    pub async fn subscription_count(
        &self,
        app: &PusherApp,
        channel: &str,
    ) -> Result<usize, PusherError> {
        let counts = self
            .subscription_counts(app, std::slice::from_ref(&channel.to_owned()))
            .await?;
        Ok(counts[0])
    }

    /// Subscribers of each of `channels` (at most [`MAX_TRIGGER_CHANNELS`]) of `app`,
    /// on every node, in the order given: one census for them all.
    pub async fn subscription_counts(
        &self,
        app: &PusherApp,
        channels: &[String],
    ) -> Result<Vec<usize>, PusherError> {
        if channels.len() > MAX_TRIGGER_CHANNELS {
            return Err(PusherError::TooManyChannels(channels.len()));
        }
        let mapped = channels
            .iter()
            .map(|c| {
                channel::to_pushgate(&app.id, c).map_err(|error| PusherError::BadChannel {
                    name: c.clone(),
                    error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let census = self
            .broker()
            .census(CensusQuery::Channels(mapped.clone()))
            .await?;
        Ok(mapped.iter().map(|pg| census.get(pg) as usize).collect())
    }
}
