//! Logging setup. Logs go to stderr, always: on the stdio transport, stdout is the protocol.

use tracing_subscriber::EnvFilter;

/// Crates that log whole protocol messages (tool arguments and results) below this level; they
/// are capped here whatever `RUST_LOG` says, because arguments never reach the log.
const CAPPED: &[&str] = &["rmcp=warn", "hyper=info"];

/// Installs the stderr logger; `RUST_LOG` overrides the default `portcullis=info`, except for
/// the [`CAPPED`] crates.
pub fn init() {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("portcullis=info"));
    for directive in CAPPED {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
