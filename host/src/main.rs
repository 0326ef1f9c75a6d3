//! The `portcullis` command. Parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

// glibc's allocator under many threads spent about a third of a governed HTTP call's CPU
// (docs/perf.md); mimalloc's thread-local free lists do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = portcullis::cli::Cli::parse();
    // One stdio client is served on one thread: no hand-offs between workers per message.
    let mut builder = if cli.serves_stdio() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(portcullis::cli::run(cli));
    // Outside the runtime: the last spans and metrics are flushed to the collector.
    portcullis::telemetry::shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
