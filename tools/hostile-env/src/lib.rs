//! Hostile: looks for ambient authority — inherited environment variables, arguments, stdin,
//! a current directory, filesystem roots, and the network (TCP connect and DNS). Reports
//! everything it found; the test asserts it found only what was granted.
use portcullis_sdk::{Error, Output, Tool, export_tools, json};
use schemars::JsonSchema;
use serde::Deserialize;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Deserialize, JsonSchema)]
struct ProbeInput {
    /// An address to try to connect to, e.g. `127.0.0.1:8080`.
    connect: String,
}

struct Probe;

impl Tool for Probe {
    type Input = ProbeInput;
    const NAME: &'static str = "probe_ambient";
    const DESCRIPTION: &'static str = "Reports the environment it can see.";

    fn call(input: ProbeInput) -> Result<Output, Error> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let args: Vec<String> = std::env::args().collect();
        let mut stdin = String::new();
        let stdin_result = std::io::stdin()
            .read_to_string(&mut stdin)
            .map_err(|e| e.to_string());
        let cwd = std::env::current_dir()
            .map(|p| p.display().to_string())
            .ok();
        let root = std::fs::read_dir("/")
            .map(|d| d.count())
            .map_err(|e| e.to_string());
        let dot = std::fs::read_dir(".")
            .map(|d| d.count())
            .map_err(|e| e.to_string());
        let tcp = match input.connect.parse() {
            Ok(addr) => TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .map(|_| "connected".to_string())
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("bad address: {e}")),
        };
        let dns = "localhost:80"
            .to_socket_addrs()
            .map(|a| a.count())
            .map_err(|e| e.to_string());
        Output::structured(&json!({
            "env": env, "args": args, "stdin": stdin, "stdin_result": stdin_result.err(),
            "cwd": cwd, "root": format!("{root:?}"), "dot": format!("{dot:?}"),
            "tcp": format!("{tcp:?}"), "dns": format!("{dns:?}"),
        }))
    }
}

export_tools!(Probe);
