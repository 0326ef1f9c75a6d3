//! Host-side bindings for the `portcullis:tool` WIT package: the current version (`wit/`)
//! and 0.1.0 (`wit/legacy/0.1/`), whose components keep working.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "server-component",
    imports: {
        "portcullis:tool/host.elicit": async | trappable,
        "portcullis:tool/host.elicit-url": async | trappable,
        "portcullis:tool/host.sample": async | trappable,
    },
    exports: { default: async },
});

/// `portcullis:tool@0.1.0`: tools only, content without links or annotations.
pub mod v01 {
    wasmtime::component::bindgen!({
        path: "../wit/legacy/0.1",
        world: "tool-component",
        exports: { default: async },
    });
}
