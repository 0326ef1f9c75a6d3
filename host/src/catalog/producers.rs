//! What a component says it was made with (its `producers` custom sections), for people:
//! `portcullis tools` and the load log show the language, so an 18 MB component that takes
//! seconds to compile is recognisably a Python or JavaScript interpreter, not a bug.

use wasmparser::{Imports, KnownCustom, Parser, Payload};

/// The component's source language, if it tells: an embedded interpreter first (CPython,
/// linked as `libpython*.so` by componentize-py; ComponentizeJS in the producers), since its
/// runtime glue says "Rust" or "C++"; then the first `language` of its producers sections.
pub fn language(bytes: &[u8]) -> Option<String> {
    let mut languages = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let section = match payload {
            Ok(Payload::CustomSection(section)) => section,
            Ok(Payload::ImportSection(imports)) => {
                let python = imports.into_iter().flatten().any(|group| {
                    let module = match group {
                        Imports::Single(_, import) => import.module,
                        Imports::Compact1 { module, .. } | Imports::Compact2 { module, .. } => {
                            module
                        }
                    };
                    module.starts_with("libpython")
                });
                if python {
                    return Some("Python".into());
                }
                continue;
            }
            _ => continue,
        };
        let KnownCustom::Producers(reader) = section.as_known() else {
            continue;
        };
        for field in reader.into_iter().flatten() {
            for value in field.values.into_iter().flatten() {
                match (field.name, value.name) {
                    ("processed-by", "ComponentizeJS" | "componentize-js") => {
                        return Some("JavaScript".into());
                    }
                    ("language", name) if !languages.iter().any(|l| l == name) => {
                        languages.push(name.to_string())
                    }
                    _ => {}
                }
            }
        }
    }
    languages.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_without_producers_has_no_language() {
        // An empty core module: the magic, version 1.
        assert_eq!(language(b"\0asm\x01\0\0\0"), None);
        assert_eq!(language(b"not wasm"), None);
    }
}
