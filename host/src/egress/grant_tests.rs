//! The http grant: what compiles, what matches.

use super::*;

fn rule(json: &str) -> HttpRule {
    HttpRule::compile(&serde_json::from_str(json).unwrap()).unwrap()
}

fn check(
    rules: &[HttpRule],
    https: bool,
    host: &str,
    port: u16,
    method: &str,
    path: &str,
) -> Result<(), String> {
    let host = parse_host(host).unwrap();
    match_request(
        rules,
        &RequestFacts {
            https,
            host: &host,
            port,
            method,
            path_and_query: path,
        },
    )
    .map(|_| ())
}

#[test]
fn defaults_are_https_443_get_head_any_path() {
    let r = [rule(r#"{"host": "api.example.com"}"#)];
    assert!(check(&r, true, "api.example.com", 443, "GET", "/x").is_ok());
    assert!(check(&r, true, "API.example.com.", 443, "HEAD", "/").is_ok());
    let e = check(&r, false, "api.example.com", 80, "GET", "/").unwrap_err();
    assert!(e.contains("scheme http is not granted"), "{e}");
    let e = check(&r, true, "api.example.com", 8443, "GET", "/").unwrap_err();
    assert!(
        e.contains("port 8443 is not granted") && e.contains("443"),
        "{e}"
    );
    let e = check(&r, true, "api.example.com", 443, "POST", "/").unwrap_err();
    assert!(e.contains("method POST is not granted"), "{e}");
    let e = check(&r, true, "other.example.com", 443, "GET", "/").unwrap_err();
    assert!(e.contains("host other.example.com is not granted"), "{e}");
    let e = check(&[], true, "a.b", 443, "GET", "/").unwrap_err();
    assert!(e.contains("no http grant"), "{e}");
}

#[test]
fn wildcards_cover_names_below_only() {
    let r = [rule(r#"{"host": "*.example.com"}"#)];
    assert!(check(&r, true, "a.example.com", 443, "GET", "/").is_ok());
    assert!(check(&r, true, "a.b.example.com", 443, "GET", "/").is_ok());
    assert!(check(&r, true, "example.com", 443, "GET", "/").is_err());
    assert!(check(&r, true, "evilexample.com", 443, "GET", "/").is_err());
    assert!(check(&r, true, "example.com.evil.net", 443, "GET", "/").is_err());
    for bad in ["*", "*.com", "a.*.com", "*.10.0.0.1", "**.example.com"] {
        let g: HttpGrant = serde_json::from_value(serde_json::json!({"host": bad})).unwrap();
        assert!(HttpRule::compile(&g).is_err(), "{bad} was accepted");
    }
}

#[test]
fn path_prefixes_hold_against_dot_segments_and_encodings() {
    let r = [rule(
        r#"{"host": "h.example", "paths": ["/v1/"], "methods": ["get"]}"#,
    )];
    assert!(check(&r, true, "h.example", 443, "GET", "/v1/services?x=1").is_ok());
    for bad in [
        "/v1/../admin",
        "/v1/%2e%2e/admin",
        "/v1/%2E./admin",
        "/v1%2f../admin",
        "/v1\\..\\admin",
        "/v2/x",
        "/v1",
        "/admin?/v1/",
    ] {
        assert!(
            check(&r, true, "h.example", 443, "GET", bad).is_err(),
            "{bad}"
        );
    }
    let r = [rule(r#"{"host": "h.example", "paths": ["/v1"]}"#)];
    assert!(check(&r, true, "h.example", 443, "GET", "/v1").is_ok());
    assert!(check(&r, true, "h.example", 443, "GET", "/v1/x").is_ok());
    assert!(check(&r, true, "h.example", 443, "GET", "/v1x").is_err());
}

#[test]
fn numeric_hosts_name_their_own_address() {
    let r = rule(r#"{"host": "127.0.0.1", "schemes": ["http"], "ports": [8091]}"#);
    assert!(r.allows_private("127.0.0.1".parse().unwrap()));
    assert!(r.allows_private("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!r.allows_private("127.0.0.2".parse().unwrap()));
    assert!(
        check(
            std::slice::from_ref(&r),
            false,
            "2130706433",
            8091,
            "GET",
            "/"
        )
        .is_ok()
    );
    let named = rule(r#"{"host": "db.internal", "allow_private": ["10.0.0.0/8", "fd00::1"]}"#);
    assert!(named.allows_private("10.9.9.9".parse().unwrap()));
    assert!(named.allows_private("fd00::1".parse().unwrap()));
    assert!(!named.allows_private("192.168.0.1".parse().unwrap()));
}

#[test]
fn bad_grants_are_refused_with_the_reason() {
    for (json, want) in [
        (
            r#"{"host": "a.example", "schemes": ["ftp"]}"#,
            "scheme `ftp`",
        ),
        (
            r#"{"host": "a.example", "methods": ["CONNECT"]}"#,
            "CONNECT",
        ),
        (
            r#"{"host": "a.example", "methods": ["G ET"]}"#,
            "not an HTTP method",
        ),
        (r#"{"host": "a.example", "ports": [0]}"#, "port 0"),
        (
            r#"{"host": "a.example", "paths": ["v1"]}"#,
            "must start with `/`",
        ),
        (
            r#"{"host": "a.example", "allow_private": ["nope"]}"#,
            "not an address or CIDR",
        ),
        (
            r#"{"host": "a.example", "inject": {"header": "Host", "secret": "T"}}"#,
            "cannot be injected",
        ),
        (
            r#"{"host": "a.example", "inject": {"header": "X-T", "secret": "T", "format": "Bearer"}}"#,
            "no `{}`",
        ),
        (
            r#"{"host": "a.example", "inject": {"header": "X T", "secret": "T"}}"#,
            "not a header name",
        ),
        (
            r#"{"host": "a.example", "inject": {"header": "X-T"}}"#,
            "needs a `secret` name or an `exchange`",
        ),
        (
            r#"{"host": "a.example", "inject": {"header": "X-T", "secret": "T", "exchange": {"audience": "a"}}}"#,
            "not both",
        ),
        (
            r#"{"host": "a.example", "inject": {"header": "X-T", "exchange": {"scope": "a"}}}"#,
            "needs an `audience` or a `resource`",
        ),
    ] {
        let g: HttpGrant = serde_json::from_str(json).unwrap();
        let e = HttpRule::compile(&g).unwrap_err();
        assert!(e.contains(want), "{json}: {e}");
    }
    let g: Result<HttpGrant, _> = serde_json::from_str(r#"{"host": "a", "port": 1}"#);
    assert!(g.is_err(), "unknown fields are refused");
}

#[test]
fn injection_splits_the_format() {
    let r = rule(
        r#"{"host": "a.example", "inject": {"header": "Authorization", "secret": "T", "format": "Bearer {}"}}"#,
    );
    let inject = r.inject.unwrap();
    assert_eq!(inject.header, "authorization");
    assert_eq!(
        (inject.before.as_str(), inject.after.as_str()),
        ("Bearer ", "")
    );
}

#[test]
fn an_exchanged_token_goes_by_what_it_is_for() {
    let r = rule(
        r#"{"host": "a.example", "inject": {"header": "Authorization", "format": "Bearer {}", "exchange": {"audience": "orders", "scope": "read"}}}"#,
    );
    let inject = r.inject.unwrap();
    assert_eq!(inject.secret, "exchanged:aud=orders;scope=read");
    assert_eq!(inject.exchange.unwrap().audience.as_deref(), Some("orders"));
}

#[test]
fn a_token_for_a_resource_goes_only_to_that_resource() {
    for ok in [
        r#"{"host": "orders.example", "inject": {"header": "Authorization", "exchange": {"resource": "https://orders.example/api"}}}"#,
        r#"{"host": "*.corp.example", "inject": {"header": "Authorization", "exchange": {"resource": "https://orders.corp.example/"}}}"#,
        r#"{"host": "127.0.0.1", "inject": {"header": "Authorization", "exchange": {"resource": "http://127.0.0.1:8091"}}}"#,
    ] {
        rule(ok);
    }
    for bad in [
        r#"{"host": "evil.example", "inject": {"header": "Authorization", "exchange": {"resource": "https://orders.example/"}}}"#,
        r#"{"host": "*.corp.example", "inject": {"header": "Authorization", "exchange": {"resource": "https://corp.example/"}}}"#,
        r#"{"host": "orders.example.evil", "inject": {"header": "Authorization", "exchange": {"audience": "a", "resource": "https://orders.example/"}}}"#,
    ] {
        let g: HttpGrant = serde_json::from_str(bad).unwrap();
        let e = HttpRule::compile(&g).unwrap_err();
        assert!(e.contains("not on this grant's host"), "{bad}: {e}");
    }
}

#[test]
fn the_short_cli_form_parses() {
    let g = parse_cli_grant("http://127.0.0.1:8091/v1/,GET,POST").unwrap();
    assert_eq!(g.host, "127.0.0.1");
    assert_eq!(g.schemes, ["http"]);
    assert_eq!(g.ports, [8091]);
    assert_eq!(g.paths, ["/v1/"]);
    assert_eq!(g.methods, ["GET", "POST"]);
    let g = parse_cli_grant("api.example.com").unwrap();
    assert!(g.schemes.is_empty() && g.ports.is_empty());
    let g = parse_cli_grant("[::1]:8080").unwrap();
    assert_eq!((g.host.as_str(), g.ports[0]), ("[::1]", 8080));
    let g = parse_cli_grant(r#"{"host": "x.example", "methods": ["PUT"]}"#).unwrap();
    assert_eq!(g.methods, ["PUT"]);
    assert!(parse_cli_grant("h:99999").is_err());
}
