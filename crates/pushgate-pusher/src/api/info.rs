//! The `info` attribute list of the API (`info=user_count,subscription_count`): which
//! occupancy figures an answer carries.

use serde_json::{Map, Value};

use super::backend::Occupancy;
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

    /// The requested attributes of one channel, as a JSON object.
    pub fn render(&self, o: &Occupancy) -> Map<String, Value> {
        let mut m = Map::new();
        if self.user_count {
            m.insert("user_count".into(), o.users.unwrap_or(0).into());
        }
        if self.subscription_count {
            m.insert("subscription_count".into(), o.subscriptions.into());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let i = Info::parse("user_count,subscription_count").unwrap();
        let o = Occupancy {
            subscriptions: 3,
            users: Some(2),
        };
        assert_eq!(
            Value::Object(i.render(&o)),
            serde_json::json!({"user_count":2,"subscription_count":3})
        );
        assert!(Info::parse("").unwrap().is_empty());
        assert_eq!(
            Info::parse("cache").unwrap_err(),
            Invalid::InfoAttribute("cache".into())
        );
    }
}
