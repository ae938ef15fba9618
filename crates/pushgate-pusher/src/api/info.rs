//! The `info` attribute list of the API (`info=user_count,subscription_count`): which
//! occupancy figures an answer carries.

use serde_json::{Map, Value};

use super::error::Invalid;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    pub user_count: bool,
    pub subscription_count: bool,
}

impl Info {
    /// A comma-separated list; empty: no attribute. Unknown attributes are refused.
    pub fn parse(list: &str) -> Result<Info, Invalid> {
        let mut info = Info::default();
        for attr in list.split(',').filter(|a| !a.is_empty()) {
            match attr {
                "user_count" => info.user_count = true,
                "subscription_count" => info.subscription_count = true,
                other => return Err(Invalid::InfoAttribute(other.into())),
            }
        }
        Ok(info)
    }

    pub fn is_empty(&self) -> bool {
        !self.user_count && !self.subscription_count
    }

    /// The requested attributes of one channel, as a JSON object: `users` is read
    /// only when `user_count` was asked for (it is a cluster-wide presence read).
    pub async fn render<F, E>(&self, subscriptions: u64, users: F) -> Result<Map<String, Value>, E>
    where
        F: std::future::Future<Output = Result<u64, E>>,
    {
        let mut m = Map::new();
        if self.user_count {
            m.insert("user_count".into(), users.await?.into());
        }
        if self.subscription_count {
            m.insert("subscription_count".into(), subscriptions.into());
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_and_renders() {
        let i = Info::parse("user_count,subscription_count").unwrap();
        let m = i.render(3, async { Ok::<_, ()>(2) }).await.unwrap();
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"user_count":2,"subscription_count":3})
        );
        let none = Info::parse("subscription_count").unwrap();
        let m = none.render(3, async { Err::<u64, _>("not read") }).await;
        assert_eq!(m.unwrap().len(), 1, "users not read");
        assert!(Info::parse("").unwrap().is_empty());
        assert_eq!(
            Info::parse("cache").unwrap_err(),
            Invalid::InfoAttribute("cache".into())
        );
    }
}
