//! Loading components: digests, the compile cache, pinned descriptors, name collisions.

use std::fs;

use portcullis::catalog::{CacheOutcome, Catalog};
use portcullis::runner::{EngineSettings, Runner};

use crate::support::{EXAMPLE_TOOLS, component};

fn runner() -> Runner {
    Runner::new(
        EngineSettings {
            admission: crate::support::admission(2),
            max_memory_bytes: 64 * 1024 * 1024,
        },
        portcullis::capabilities::Capabilities::basic(Vec::new()),
    )
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
    for path in artifacts(cache.path()) {
        fs::write(path, b"garbage").unwrap();
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

/// The compiled artifacts in a cache directory (not its key).
fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

async fn load_one(tools: &std::path::Path, cache: &std::path::Path) -> Catalog {
    Catalog::load(&runner(), tools, Some(cache)).await.unwrap()
}

#[tokio::test]
async fn a_cached_artifact_is_loaded_only_when_bound_to_its_component() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = ["data", "workspace"]
        .iter()
        .map(|name| {
            let dir = tempfile::tempdir().unwrap();
            fs::copy(component(name), dir.path().join(format!("{name}.wasm"))).unwrap();
            dir
        })
        .collect();
    load_one(dirs[0].path(), cache.path()).await;
    let data_artifact = artifacts(cache.path());
    load_one(dirs[1].path(), cache.path()).await;
    let workspace_artifact: Vec<_> = artifacts(cache.path())
        .into_iter()
        .filter(|p| !data_artifact.contains(p))
        .collect();
    assert_eq!((data_artifact.len(), workspace_artifact.len()), (1, 1));

    // An attacker puts `data`'s compiled code under `workspace`'s file name: it must not be
    // served under workspace's pinned digest.
    fs::copy(&data_artifact[0], &workspace_artifact[0]).unwrap();
    let swapped = load_one(dirs[1].path(), cache.path()).await;
    assert_eq!(swapped.components()[0].cache, CacheOutcome::Compiled);
    assert!(swapped.get("read_file").is_some() && swapped.get("hash").is_none());

    // One flipped byte in the code is refused too.
    let mut bytes = fs::read(&data_artifact[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&data_artifact[0], &bytes).unwrap();
    assert_eq!(
        load_one(dirs[0].path(), cache.path()).await.components()[0].cache,
        CacheOutcome::Compiled
    );
    assert_eq!(
        load_one(dirs[0].path(), cache.path()).await.components()[0].cache,
        CacheOutcome::Hit,
        "the recompiled artifact is cached again"
    );

    // A cache directory others can write is not used at all, valid artifacts or not.
    fs::set_permissions(cache.path(), fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        load_one(dirs[0].path(), cache.path()).await.components()[0].cache,
        CacheOutcome::Disabled
    );
    fs::set_permissions(cache.path(), fs::Permissions::from_mode(0o700)).unwrap();
    // Nor one owned by another user (when the test may hand it to one: it runs as root in CI).
    if std::os::unix::fs::chown(cache.path(), Some(65534), None).is_ok() {
        assert_eq!(
            load_one(dirs[0].path(), cache.path()).await.components()[0].cache,
            CacheOutcome::Disabled
        );
        std::os::unix::fs::chown(
            cache.path(),
            Some(rustix::process::geteuid().as_raw()),
            None,
        )
        .unwrap();
    }
    // A key others can read is no secret: the cache is not used.
    let key = cache.path().join("key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        load_one(dirs[0].path(), cache.path()).await.components()[0].cache,
        CacheOutcome::Disabled
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    // The key decides: with a new key every old artifact is refused.
    fs::remove_file(cache.path().join("key")).unwrap();
    assert_eq!(
        load_one(dirs[0].path(), cache.path()).await.components()[0].cache,
        CacheOutcome::Compiled
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
