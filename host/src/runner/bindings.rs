//! Host-side bindings for the `portcullis:tool` WIT package (`wit/`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "tool-component",
    exports: { default: async },
});
