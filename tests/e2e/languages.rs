//! Tools in Python and JavaScript: the examples in `sdk/python/example` and `sdk/js/example`
//! (built by `scripts/build-languages` with componentize-py and componentize-js) are the Rust
//! `hash` tool again, and through the real gateway they answer exactly what it answers, are
//! denied by policy like it, refused on a schema violation before they run, and report their
//! own errors as tool errors.

use rmcp::model::CallToolResult;
use serde_json::{Value, json};

use crate::gateway::{Options, binary, call, setup, stdio_client, text};
use crate::support::SHA256_ABC;

/// Everything may be listed and called, except hashing "secret plans".
const POLICY: &str = r#"package portcullis
import rego.v1
default decision := {"allow": false, "reasons": ["not allowed"]}
decision := {"allow": true} if input.action == "list"
decision := {"allow": true} if {
    input.action == "call"
    input.args.text != "secret plans"
}
decision := {"allow": false, "reasons": ["no hashing of secret plans"]} if {
    input.action == "call"
    input.args.text == "secret plans"
}
"#;

fn structured(result: &CallToolResult) -> Value {
    assert_eq!(result.is_error, Some(false), "{result:?}");
    result
        .structured_content
        .clone()
        .expect("structured output")
}

fn failure(result: &CallToolResult) -> String {
    assert_eq!(result.is_error, Some(true), "{result:?}");
    text(result)
}

#[tokio::test]
async fn python_and_javascript_tools_answer_like_the_rust_one_and_are_governed_alike() {
    let s = setup(Options {
        components: &["data", "hash-py", "hash-js"],
        policy: Some(POLICY),
        ..Options::default()
    });
    let client = stdio_client(&s).await;
    let listed = client.list_all_tools().await.unwrap();
    let rust = listed.iter().find(|t| t.name == "hash").unwrap();

    for name in ["hash_py", "hash_js"] {
        let tool = listed
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} is listed"));
        assert_eq!(tool.description, rust.description, "{name}");
        assert!(tool.output_schema.is_some(), "{name}");
        let read_only = tool.annotations.as_ref().and_then(|a| a.read_only_hint);
        assert_eq!(read_only, Some(true), "{name}");

        for args in [
            json!({"text": "abc"}),
            json!({"text": "abc", "algorithm": "sha512"}),
            json!({"text": "ünïcødé"}),
        ] {
            let theirs = call(&client, name, args.clone()).await.unwrap();
            let ours = call(&client, "hash", args.clone()).await.unwrap();
            assert_eq!(structured(&theirs), structured(&ours), "{name} {args}");
        }
        let abc = call(&client, name, json!({"text": "abc"})).await.unwrap();
        assert_eq!(structured(&abc)["hex"], SHA256_ABC);

        // Refused before the tool runs: the schema, then policy.
        let wrong = call(&client, name, json!({"text": 5})).await.unwrap();
        assert!(
            failure(&wrong).contains("do not match the tool's input schema"),
            "{name}: {wrong:?}"
        );
        let extra = call(&client, name, json!({"text": "a", "and": 1}))
            .await
            .unwrap();
        assert!(
            failure(&extra).contains("input schema"),
            "{name}: {extra:?}"
        );
        let denied = call(&client, name, json!({"text": "secret plans"}))
            .await
            .unwrap();
        assert_eq!(
            failure(&denied),
            "denied by policy: no hashing of secret plans",
            "{name}"
        );
        // The tool's own error, raised in Python or thrown in JavaScript.
        let empty = call(&client, name, json!({"text": ""})).await.unwrap();
        assert_eq!(
            failure(&empty),
            "invalid input: there is nothing to hash: `text` is empty",
            "{name}"
        );
    }
    client.cancel().await.unwrap();

    // `portcullis tools` says what each component is: size, language, how it loaded.
    let listed = std::process::Command::new(binary())
        .arg("--config")
        .arg(&s.config)
        .arg("tools")
        .env("RUST_LOG", "portcullis=error")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for (component, language) in [
        ("data", "Rust"),
        ("hash-py", "Python"),
        ("hash-js", "JavaScript"),
    ] {
        let line = listed
            .lines()
            .skip_while(|l| !l.starts_with(&format!("{component}  ")))
            .nth(1)
            .unwrap_or_else(|| panic!("{component} is listed:\n{listed}"));
        assert!(line.contains(&format!(" MB, {language}, ")), "{line}");
        assert!(line.contains("from the compile cache in"), "{line}");
    }
}
