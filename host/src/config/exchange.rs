//! `[token_exchange]`: the token endpoint and client credentials the gateway uses to exchange
//! a caller's OAuth access token for a token for an upstream (RFC 8693), when an http grant
//! asks for one (`inject.exchange`; see `delegation`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use super::capabilities::SecretSpec;
use super::https_or_loopback;
use crate::delegation::{ExchangeCeiling, ExchangeConfig};
use crate::grants::parse_duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExchangeFile {
    token_endpoint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    timeout: Option<String>,
    refresh_before: Option<String>,
    max_cached: Option<usize>,
    audiences: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
}

fn duration(key: &str, value: Option<&str>, default: Duration) -> Result<Duration> {
    value.map_or(Ok(default), |v| {
        parse_duration(v).map_err(|e| anyhow!("token_exchange.{key}: {e}"))
    })
}

/// `None` without a `[token_exchange]` table. It needs `[oauth]` (the subject tokens are its
/// access tokens) and a configured secret for the client.
pub(super) fn resolve(
    file: Option<ExchangeFile>,
    oauth: bool,
    secrets: &BTreeMap<String, SecretSpec>,
) -> Result<Option<ExchangeConfig>> {
    let Some(file) = file else {
        return Ok(None);
    };
    if !oauth {
        bail!(
            "token_exchange needs [oauth]: the tokens it exchanges are the callers' OAuth access tokens"
        );
    }
    let token_endpoint = file.token_endpoint.ok_or_else(|| {
        anyhow!("token_exchange.token_endpoint is required (the authorization server's token endpoint URL)")
    })?;
    https_or_loopback("token_exchange.token_endpoint", &token_endpoint)?;
    let client_id = file
        .client_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| anyhow!("token_exchange.client_id is required (the gateway's client id at the authorization server)"))?;
    let client_secret = file.client_secret.ok_or_else(|| {
        anyhow!("token_exchange.client_secret is required: the name of a [secrets] entry holding the client's secret")
    })?;
    if !secrets.contains_key(&client_secret) {
        bail!(
            "token_exchange.client_secret names {client_secret}, which is not configured under [secrets]"
        );
    }
    let timeout = duration("timeout", file.timeout.as_deref(), Duration::from_secs(5))?;
    if timeout.is_zero() || timeout > Duration::from_secs(60) {
        bail!("token_exchange.timeout must be between 1ms and 60s");
    }
    let refresh_before = duration(
        "refresh_before",
        file.refresh_before.as_deref(),
        Duration::from_secs(30),
    )?;
    let max_cached = file.max_cached.unwrap_or(10_000);
    if max_cached == 0 {
        bail!("token_exchange.max_cached must be at least 1");
    }
    let ceiling = ExchangeCeiling {
        audiences: file.audiences.map(|v| v.into_iter().collect()),
        resources: file.resources.map(|v| v.into_iter().collect()),
        scopes: file.scopes.map(|v| v.into_iter().collect()),
    };
    Ok(Some(ExchangeConfig {
        token_endpoint,
        client_id,
        client_secret,
        timeout,
        refresh_before,
        max_cached,
        ceiling,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, oauth: bool) -> Result<Option<ExchangeConfig>> {
        let file: ExchangeFile = toml::from_str(text)?;
        let secrets = BTreeMap::from([("EX".to_string(), SecretSpec::Env("EX".into()))]);
        resolve(Some(file), oauth, &secrets)
    }

    #[test]
    fn settings_are_checked_with_their_key() {
        let ok = parse(
            "token_endpoint = \"https://idp.example/token\"\nclient_id = \"gw\"\nclient_secret = \"EX\"\n",
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.timeout, Duration::from_secs(5));
        assert_eq!(ok.refresh_before, Duration::from_secs(30));
        assert_eq!(
            ok.ceiling,
            ExchangeCeiling::default(),
            "no lists: any value"
        );
        let listed = parse(
            "token_endpoint = \"https://idp.example/token\"\nclient_id = \"gw\"\nclient_secret = \"EX\"\naudiences = [\"orders\"]\nscopes = [\"orders:read\"]\n",
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            listed.ceiling.audiences,
            Some(["orders".to_string()].into())
        );
        assert_eq!(listed.ceiling.resources, None);
        let base = "client_id = \"gw\"\nclient_secret = \"EX\"\n";
        for (text, oauth, why) in [
            (base.to_string(), true, "token_endpoint is required"),
            (
                format!("token_endpoint = \"http://idp.example/token\"\n{base}"),
                true,
                "must be an https:// URL",
            ),
            (
                format!("token_endpoint = \"https://i/t\"\n{base}"),
                false,
                "needs [oauth]",
            ),
            (
                "token_endpoint = \"https://i/t\"\nclient_id = \"gw\"\nclient_secret = \"NOPE\"\n"
                    .to_string(),
                true,
                "not configured under [secrets]",
            ),
            (
                format!("token_endpoint = \"https://i/t\"\n{base}timeout = \"0s\"\n"),
                true,
                "token_exchange.timeout",
            ),
        ] {
            let e = format!("{:#}", parse(&text, oauth).unwrap_err());
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
