//! Loading components: digests, the compile cache, pinned descriptors, name collisions.

use std::fs;

use portcullis::catalog::{CacheOutcome, Catalog};
use portcullis::runner::{EngineSettings, Runner};

use crate::support::{EXAMPLE_TOOLS, component};

fn runner() -> Runner {
    Runner::new(EngineSettings {
        max_concurrent: 2,
        max_memory_bytes: 64 * 1024 * 1024,
    })
    .unwrap()
}

#[tokio::test]
async fn a_restart_loads_from_the_cache_without_recompiling() {
    let tools = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    fs::copy(component("data"), tools.path().join("data.wasm")).unwrap();
    fs::copy(component("workspace"), tools.path().join("workspace.wasm")).unwrap();

    let first = Catalog::load(&runner(), tools.path(), Some(cache.path()))
        .await
        .unwrap();
    assert!(
        first
            .components()
            .iter()
            .all(|c| c.cache == CacheOutcome::Compiled)
    );
    let second = Catalog::load(&runner(), tools.path(), Some(cache.path()))
        .await
        .unwrap();
    assert!(
        second
            .components()
            .iter()
            .all(|c| c.cache == CacheOutcome::Hit)
    );

    // Same bytes, same digests, same pinned descriptors.
    let names: Vec<_> = second.tools().map(|t| t.descriptor.name.clone()).collect();
    assert_eq!(names, EXAMPLE_TOOLS);
    for tool in first.tools() {
        let again = second.get(&tool.descriptor.name).unwrap();
        assert_eq!(tool.descriptor.digest, again.descriptor.digest);
        assert_eq!(tool.component.digest, again.component.digest);
    }
    let wasm = fs::read(component("data")).unwrap();
    let expected = format!("sha256:{}", hex_digest(&wasm));
    assert_eq!(second.components()[0].digest, expected);

    // A corrupt artifact is recompiled, not trusted.
    for entry in fs::read_dir(cache.path()).unwrap() {
        fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let third = Catalog::load(&runner(), tools.path(), Some(cache.path()))
        .await
        .unwrap();
    assert!(
        third
            .components()
            .iter()
            .all(|c| c.cache == CacheOutcome::Compiled)
    );
}

fn hex_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn two_tools_with_one_name_are_a_load_error_naming_both() {
    let tools = tempfile::tempdir().unwrap();
    fs::copy(component("data"), tools.path().join("a-data.wasm")).unwrap();
    fs::copy(component("data"), tools.path().join("b-copy.wasm")).unwrap();
    let error = match Catalog::load(&runner(), tools.path(), None).await {
        Ok(_) => panic!("duplicate tool names were accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("`hash`") || error.contains("`json_query`"),
        "{error}"
    );
    assert!(
        error.contains("a-data") && error.contains("b-copy"),
        "{error}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_component_is_a_clear_load_error() {
    let tools = tempfile::tempdir().unwrap();
    fs::write(tools.path().join("junk.wasm"), b"\0asm not really").unwrap();
    let error = match Catalog::load(&runner(), tools.path(), None).await {
        Ok(_) => panic!("junk was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("junk.wasm") && error.contains("compiling"),
        "{error}"
    );
}
