//! The configuration's unit tests: defaults, overrides, and each validated setting.

use super::*;

#[test]
fn defaults_are_valid_and_round_trip() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
}

#[test]
fn env_and_flags_override_by_field_name() {
    let mut c = Config::default();
    c.apply_env([
        ("PUSHGATE_WS_ADDR".to_string(), "0.0.0.0:9000".to_string()),
        ("PUSHGATE_SHARDS".to_string(), "4".to_string()),
        ("PUSHGATE_PIN_SHARDS".to_string(), "true".to_string()),
        ("HOME".to_string(), "/root".to_string()),
    ])
    .unwrap();
    assert_eq!(c.ws_addr.port(), 9000);
    assert_eq!(c.shards, 4);
    assert!(c.pin_shards);
    assert!(c
        .set("shards", "many")
        .unwrap_err()
        .to_string()
        .contains("shards"));
    assert!(c
        .set("nope", "1")
        .unwrap_err()
        .to_string()
        .contains("unknown setting"));
}

#[test]
fn unknown_fields_and_bad_values_name_the_field() {
    assert!(Config::from_toml("ws_adr = \"x\"")
        .unwrap_err()
        .to_string()
        .contains("ws_adr"));
    let e = Config::from_toml("slow_policy = \"ignore\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("slow_policy")
            && e.contains("unknown variant `ignore`, expected `disconnect` or `drop_newest`"),
        "{e}"
    );
    let mut c = Config::default();
    let e = c.set("broker", "etcd").unwrap_err().to_string();
    assert!(
        e.contains("broker") && e.contains("`memory` or `redis`"),
        "{e}"
    );
    c.set("log_format", "json").unwrap();
    assert_eq!(c.log_format, LogFormat::Json);
    c.set("slow_policy", "drop_newest").unwrap();
    assert_eq!(c.hub().slow_policy, SlowPolicy::DropNewest);
    assert!(c.to_toml().contains("slow_policy = \"drop_newest\""));
    let c = Config {
        heartbeat_timeout_ms: 1000,
        heartbeat_interval_ms: 2000,
        ..Default::default()
    };
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("heartbeat_timeout_ms"));
}

#[test]
fn auth_and_limit_settings_are_validated() {
    let mut c = Config::default();
    assert_eq!(
        c.auth_mode,
        AuthMode::Anonymous,
        "make run works with no setup"
    );
    c.set(
        "allowed_origins",
        "https://a.example, http://b.example:8080",
    )
    .unwrap();
    assert_eq!(c.allowed_origins.len(), 2);
    c.validate().unwrap();
    assert_eq!(c.edge().allowed_origins[1], "http://b.example:8080");
    c.set("allowed_origins", "").unwrap();
    assert!(c.allowed_origins.is_empty());
    c.set("allowed_origins", "example.com").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("allowed_origins"), "{e}");
    for with_path in [
        "https://a.example/app",
        "https://a.example/?x=1",
        "https://u@a.example",
    ] {
        c.set("allowed_origins", with_path).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("allowed_origins"), "{with_path}: {e}");
    }
    c.set("allowed_origins", "https://a.example/").unwrap();
    c.validate().unwrap();
    let mut c = Config::default();
    c.set("auth_mode", "jwt").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("auth_mode"));
    c.set("jwt_hs256_secret", "short").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("jwt_hs256_secret"), "{e}");
    c.set("jwt_hs256_secret", &"s".repeat(32)).unwrap();
    c.validate().unwrap();
    c.set("trusted_user_header", "x-user").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("trusted_user_header"), "{e}");
    let mut c = Config::default();
    c.set("jwks_file", "/nonexistent/jwks.json").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("jwks_file"));
    c.jwks_file.clear();
    c.set("max_inbound_messages_per_sec", "70000").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("max_inbound_messages_per_sec"), "{e}");
    let mut c = Config::default();
    c.set("max_inbound_bytes_per_sec", "1000").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("max_inbound_bytes_per_sec"), "{e}");
    c.set("max_inbound_bytes_per_sec", "0").unwrap();
    c.validate().unwrap();
}

#[test]
fn an_internal_port_beyond_loopback_without_a_token_is_warned_about() {
    let mut c = Config::default();
    assert!(c.exposure_warnings().is_empty(), "loopback by default");
    c.set("http_addr", "0.0.0.0:8081").unwrap();
    c.set("grpc_addr", "[::]:50051").unwrap();
    let w = c.exposure_warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("http_addr") && w[0].contains("http_token"),
        "{w:?}"
    );
    assert!(
        w[1].contains("grpc_addr") && w[1].contains("grpc_token"),
        "{w:?}"
    );
    c.set("http_token", "s3cret").unwrap();
    c.set("grpc_token", "s3cret").unwrap();
    assert!(c.exposure_warnings().is_empty());
    c.set("http_token", "two words").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("http_token"));
}

#[test]
fn grpc_settings_are_validated() {
    let c = Config::default();
    assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:50051");
    assert!(c.grpc().token.is_empty(), "no auth by default");
    let c = Config {
        grpc_addr: c.http_addr,
        ..Default::default()
    };
    assert!(c.validate().unwrap_err().to_string().contains("grpc_addr"));
    let mut c = Config::default();
    c.set("grpc_token", "two words").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("grpc_token"));
    c.set("grpc_token", "s3cret").unwrap();
    c.validate().unwrap();
    assert_eq!(c.grpc().token, "s3cret");
}

#[test]
fn compression_settings_are_validated_and_reach_the_edge_and_hub() {
    let mut c = Config::default();
    assert!(!c.edge().compression, "off by default");
    c.set("compression", "on").unwrap();
    c.set("compression_level", "9").unwrap();
    c.set("compression_min_bytes", "1024").unwrap();
    c.validate().unwrap();
    assert!(c.edge().compression);
    assert_eq!(c.hub().compression.level, 9);
    assert_eq!(c.hub().compression.min_bytes, 1024);
    let e = c.set("compression", "gzip").unwrap_err().to_string();
    assert!(e.contains("compression") && e.contains("on"), "{e}");
    for (field, bad) in [
        ("compression_level", "0"),
        ("compression_level", "10"),
        ("compression_min_bytes", "65537"),
    ] {
        let mut c = Config::default();
        c.set(field, bad).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(field), "{field}={bad}: {e}");
    }
}

#[test]
fn sse_path_is_a_path_other_than_ws_path_or_empty() {
    let mut c = Config::default();
    for (path, ok) in [
        ("/events", true),
        ("", true),
        ("sse", false),
        ("/ws", false),
    ] {
        c.sse_path = path.into();
        match c.validate() {
            Ok(()) => assert!(ok, "{path:?} accepted"),
            Err(e) => assert!(!ok && e.to_string().contains("sse_path"), "{path:?}: {e}"),
        }
    }
}

#[test]
fn printing_redacts_every_secret() {
    let mut c = Config::from_toml(
        r#"
jwt_hs256_secret = "jwt-secret-0123456789-0123456789-abc"
http_token = "http-tok"
grpc_token = "grpc-tok"
redis_url = "rediss://app:redis-pw@a:7000,redis://app:redis-pw@b:7001"
redis_sentinel_password = "sentinel-pw"

[[pusher_apps]]
id = "1"
key = "k"
secret = "pusher-secret"
"#,
    )
    .unwrap();
    let shown = c.to_toml();
    for secret in [
        "jwt-secret",
        "http-tok",
        "grpc-tok",
        "redis-pw",
        "sentinel-pw",
        "pusher-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }
    assert!(
        shown.contains(
            "redis_url = \"rediss://app:<redacted>@a:7000,redis://app:<redacted>@b:7001\""
        ),
        "{shown}"
    );
    assert!(shown.contains("http_token = \"<redacted>\""), "{shown}");
    // What is not secret stays, and an empty secret shows as empty.
    c.http_token.clear();
    let shown = c.to_toml();
    assert!(shown.contains("http_token = \"\""), "{shown}");
    assert!(shown.contains("key = \"k\""), "{shown}");
}

#[test]
fn unfollow_linger_is_bounded_and_reaches_the_broker() {
    let mut c = Config::default();
    assert_eq!(c.redis().unfollow_linger, Duration::from_secs(2));
    c.set("unfollow_linger_ms", "0").unwrap();
    c.validate().unwrap();
    assert!(c.redis().unfollow_linger.is_zero());
    c.set("unfollow_linger_ms", "600001").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("unfollow_linger_ms"), "{e}");
}

#[test]
fn a_pusher_webhook_url_must_be_plain_http() {
    let app = |url: &str| {
        format!(
            "[[pusher_apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nwebhook_url = \"{url}\"\n"
        )
    };
    let ok = Config::from_toml(&app("http://127.0.0.1:9000/hooks")).unwrap();
    assert_eq!(ok.pusher_apps().unwrap().iter().count(), 1);
    let tls = Config::from_toml(&app("https://example.com/hooks")).unwrap();
    let e = tls.pusher_apps().unwrap_err().to_string();
    assert!(e.contains("pusher_apps") && e.contains("http://"), "{e}");
}
