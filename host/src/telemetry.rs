//! Logging setup. Logs go to stderr, always: on the stdio transport, stdout is the protocol.

use tracing_subscriber::EnvFilter;

/// Installs the stderr logger; `RUST_LOG` overrides the default `portcullis=info`.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("portcullis=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
