//! Host names and numeric addresses, in one spelling.
//!
//! A guest may spell an address many ways (`127.1`, `0x7f000001`, `017700000001`, `[::ffff:7f00:1]`,
//! `LOCALHOST.`). Everything that names a host — the grant and each request — goes through
//! [`parse_host`], which gives it exactly one spelling, so that the grant check, the deny-range
//! check and the connection all see the same address. Numeric IPv4 forms follow the WHATWG URL
//! standard (what browsers and `inet_aton` accept): one to four parts, each decimal, octal
//! (leading `0`) or hexadecimal (`0x`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host in its one spelling.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name: lower case, no trailing dot, ASCII (IDNs in their `xn--` form).
    Name(String),
    /// A numeric address (IPv4-mapped IPv6 addresses stay IPv6 here; see `ranges`).
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Parses a host as it appears in a URL authority (IPv6 in brackets) or in a grant.
pub fn parse_host(text: &str) -> Result<Host, String> {
    if text.is_empty() {
        return Err("the host is empty".into());
    }
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("`{text}`: an IPv6 address must be closed with `]`"))?;
        if inner.contains('%') {
            return Err(format!("`{text}`: IPv6 zone identifiers are not accepted"));
        }
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| format!("`{text}` is not a valid IPv6 address"));
    }
    if text.contains(':') {
        // A bare IPv6 address (grants may write one without brackets); nothing else has a colon.
        return text
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| format!("`{text}` is not a valid host (IPv6 addresses go in brackets)"));
    }
    let lower = text.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() || name.contains("..") {
        return Err(format!("`{text}` is not a valid host name"));
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    if ends_in_number(last) {
        return parse_ipv4(name)
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .ok_or_else(|| format!("`{text}` is not a valid IPv4 address"));
    }
    if name.len() > 253 {
        return Err(format!("`{text}` is longer than 253 characters"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "`{text}` is not a valid host name (letters, digits, `-` and `_` in labels of 1 to 63 characters; international names in their xn-- form)"
            ));
        }
    }
    Ok(Host::Name(name.to_string()))
}

/// WHATWG "ends in a number": the last label is all digits, or `0x` followed by hex digits.
fn ends_in_number(label: &str) -> bool {
    if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match label.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// One part of a numeric IPv4 host: decimal, octal (leading `0`) or hex (`0x`).
fn parse_ipv4_part(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 32 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The WHATWG IPv4 parser: `a`, `a.b`, `a.b.c` or `a.b.c.d`, the last part filling the rest.
fn parse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts
        .iter()
        .map(|p| parse_ipv4_part(p))
        .collect::<Option<_>>()?;
    let (last, head) = numbers.split_last()?;
    if head.iter().any(|&n| n > 255) {
        return None;
    }
    let room = 8 * (5 - numbers.len() as u32);
    if *last >= 1u64 << room {
        return None;
    }
    let mut value = *last;
    for (i, &n) in head.iter().enumerate() {
        value += n << (8 * (3 - i as u32));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> Host {
        Host::Ip(IpAddr::V4(text.parse().unwrap()))
    }

    #[test]
    fn every_spelling_of_loopback_is_one_address() {
        for spelling in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "2130706433",
            "0x7f000001",
            "0x7F.0.0.1",
            "0177.0.0.1",
            "017700000001",
            "0x7f.1",
            "127.0.0.1.",
            "0177.0x0.00.1",
        ] {
            assert_eq!(parse_host(spelling), Ok(v4("127.0.0.1")), "{spelling}");
        }
        assert_eq!(parse_host("0"), Ok(v4("0.0.0.0")));
        assert_eq!(parse_host("169.254.43518"), Ok(v4("169.254.169.254")));
        assert_eq!(parse_host("0xa9fea9fe"), Ok(v4("169.254.169.254")));
    }

    #[test]
    fn names_are_lower_case_without_a_trailing_dot() {
        assert_eq!(
            parse_host("API.Example.COM."),
            Ok(Host::Name("api.example.com".into()))
        );
        assert_eq!(parse_host("localhost"), Ok(Host::Name("localhost".into())));
        assert_eq!(
            parse_host("xn--bcher-kva.example"),
            Ok(Host::Name("xn--bcher-kva.example".into()))
        );
    }

    #[test]
    fn ipv6_forms_parse_and_bad_hosts_are_refused() {
        assert_eq!(
            parse_host("[::1]"),
            Ok(Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)))
        );
        assert_eq!(
            parse_host("[::FFFF:127.0.0.1]"),
            Ok(Host::Ip("::ffff:127.0.0.1".parse().unwrap()))
        );
        for bad in [
            "",
            "[::1",
            "[fe80::1%eth0]",
            "256.0.0.1",
            "1.2.3.4.5",
            "4294967296",
            "1.16777216",
            "a..b",
            "bücher.example",
            "a b",
            "-a.example",
            "evil.com@good.com",
            "%31%32%37.0.0.1",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(parse_host("[::1]").unwrap().to_string(), "[::1]");
        assert_eq!(parse_host("127.1").unwrap().to_string(), "127.0.0.1");
    }
}
