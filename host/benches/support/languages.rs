//! The same tool in three languages: the Rust `data` component's `hash`, and the examples
//! `hash_py` (componentize-py) and `hash_js` (componentize-js) from `scripts/build-languages`,
//! each a governed call in process with a fresh instance, interleaved so that all three share
//! the machine's state; and where a fresh instance's time goes (instantiation against the
//! call itself, from the run report).

use std::time::{Duration, Instant};

use portcullis::config::Config;
use portcullis::gate::{Asked, RawArgs, Transport};
use portcullis::grants::{Grants, Limits};
use serde_json::{Value, json};

use super::{bench_config_in, report, root, tools_dir};

const TOOLS: [(&str, &str); 3] = [
    ("hash", "data"),
    ("hash_py", "hash-py"),
    ("hash_js", "hash-js"),
];

pub async fn languages(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    for (_, component) in TOOLS {
        let from = match component {
            "data" => tools_dir().join("data.wasm"),
            other => root().join(format!(".portcullis/languages/{other}.wasm")),
        };
        assert!(
            from.exists(),
            "{} is missing: run scripts/build-languages",
            from.display()
        );
        std::fs::copy(&from, tools.join(format!("{component}.wasm"))).unwrap();
    }
    let loading = Instant::now();
    let config = Config::load(Some(&bench_config_in(dir.path(), &tools, ""))).unwrap();
    let gateway = portcullis::cli::build_gateway(&config).await.unwrap();
    println!(
        "{:<58} {:>9.2} s (compiled or from the cache)",
        "load data + hash-py + hash-js",
        loading.elapsed().as_secs_f64()
    );
    let principal = config.principal("local", "stdio").unwrap();
    let Value::Object(map) = json!({"text": "a"}) else {
        unreachable!()
    };
    let call = |tool: &'static str| {
        let args = RawArgs::Object(Some(map.clone()));
        let gateway = &gateway;
        let principal = &principal;
        async move {
            let started = Instant::now();
            let outcome = gateway
                .call(
                    principal,
                    tool,
                    args,
                    Transport::Cli,
                    Asked::default(),
                    None,
                )
                .await;
            let elapsed = started.elapsed();
            let output = outcome.map(|o| o.report.outcome.is_ok_and(|c| !c.is_error));
            assert!(output.is_ok_and(|ok| ok), "{tool}");
            elapsed
        }
    };
    for _ in 0..(n / 10).max(50) {
        for (tool, _) in TOOLS {
            call(tool).await;
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); TOOLS.len()];
    for _ in 0..n {
        for (i, (tool, _)) in TOOLS.iter().enumerate() {
            times[i].push(call(tool).await);
        }
    }
    let mut medians = Vec::new();
    for ((tool, _), times) in TOOLS.iter().zip(times) {
        let name = format!("governed call in process, fresh instance ({tool})");
        medians.push(report(&name, times).median);
    }
    for (i, (tool, _)) in TOOLS.iter().enumerate().skip(1) {
        println!(
            "{:<58} {:.1}×",
            format!("  {tool} / hash"),
            medians[i].as_secs_f64() / medians[0].as_secs_f64()
        );
    }

    // Where a fresh instance's time goes: the runner alone, no policy.
    let catalog = gateway.catalog.current();
    let (grants, limits) = (Grants::default(), Limits::default());
    for (tool, _) in TOOLS {
        let entry = catalog.get(tool).unwrap();
        let pre = &entry.component.prepared;
        let (mut ready, mut called, mut fuel) = (Vec::new(), Vec::new(), 0);
        for _ in 0..n {
            let run = gateway
                .runner
                .call(pre, tool, r#"{"text":"a"}"#, &grants, &limits)
                .await;
            ready.push(run.instantiated);
            called.push(run.elapsed - run.instantiated);
            fuel = run.fuel_used;
            assert!(run.outcome.is_ok());
        }
        let ready = super::stats(ready).median;
        let called = super::stats(called).median;
        println!(
            "{:<58} instantiate {:>8.2} µs   call {:>8.2} µs   fuel {fuel}",
            format!("  runner only ({tool})"),
            ready.as_secs_f64() * 1e6,
            called.as_secs_f64() * 1e6,
        );
    }
}
