//! The demo control plane (`demo/control-plane.py`) as a real loopback upstream for the egress
//! tests: started on an ephemeral port, asked what it received, killed when dropped.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::support;

/// A running control plane.
pub struct ControlPlane {
    _child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub host: String,
    pub port: u16,
}

impl ControlPlane {
    /// Starts one on `host` (e.g. `127.0.0.1`, `127.0.0.2`) that requires `token`.
    pub async fn start(host: &str, token: &str) -> Self {
        Self::start_with(host, token, &[]).await
    }

    pub async fn start_with(host: &str, token: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let child = Command::new("python3")
            .arg(support::root().join("demo/control-plane.py"))
            .args([
                "--listen",
                &format!("{host}:0"),
                "--quiet",
                "--token",
                token,
            ])
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 demo/control-plane.py");
        let url = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Ok(text) = std::fs::read_to_string(&ready) {
                    return text.trim().to_string();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the control plane did not start");
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Self {
            _child: child,
            _dir: dir,
            url,
            host: host.to_string(),
            port,
        }
    }

    /// Every request it received, oldest first.
    pub async fn requests(&self) -> Vec<Value> {
        let text = reqwest::get(format!("{}/_requests", self.url))
            .await
            .expect("GET /_requests")
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).expect("/_requests is JSON")
    }

    /// Forgets what it received.
    pub async fn clear(&self) {
        reqwest::Client::new()
            .delete(format!("{}/_requests", self.url))
            .send()
            .await
            .expect("DELETE /_requests");
    }
}
