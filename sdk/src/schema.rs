//! Schemas that every client reads the same way. schemars writes a few things that are valid
//! JSON Schema but that strict validators and several MCP clients warn on or refuse:
//! non-standard `format`s (`uint64`, `int32`, `double`…), `items: true`, and type lists such as
//! `type: ["integer", "null"]`. [`portable`] rewrites them without changing what validates:
//! the formats go (a `minimum` already says "unsigned"; formats are annotations in 2020-12),
//! `items: true` goes (it allows anything, as no `items` does), and a nullable type becomes
//! `anyOf: [{type: T, …}, {type: "null"}]`.

use schemars::Schema;
use schemars::transform::transform_subschemas;
use serde_json::{Map, Value};

/// The formats of JSON Schema 2020-12 (§7.3): the only ones a strict validator knows.
const STANDARD_FORMATS: [&str; 19] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Keywords that describe a schema rather than constrain it: they stay at the top when a
/// nullable type is split into `anyOf`.
const ANNOTATIONS: [&str; 8] = [
    "$schema",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Rewrites `schema` and every schema inside it (see the module docs).
pub fn portable(schema: &mut Schema) {
    if let Some(object) = schema.as_object_mut() {
        rewrite(object);
    }
    transform_subschemas(&mut portable, schema);
}

fn rewrite(object: &mut Map<String, Value>) {
    if let Some(Value::String(format)) = object.get("format")
        && !STANDARD_FORMATS.contains(&format.as_str())
    {
        object.remove("format");
    }
    if object.get("items") == Some(&Value::Bool(true)) {
        object.remove("items");
    }
    let Some(Value::Array(types)) = object.get("type") else {
        return;
    };
    let mut types: Vec<Value> = types.clone();
    types.dedup();
    let nullable = types.iter().any(|t| t == "null");
    types.retain(|t| t != "null");
    let branch_type = match types.as_slice() {
        [] => Value::String("null".into()),
        [one] if !nullable => {
            object.insert("type".into(), one.clone());
            return;
        }
        [one] => one.clone(),
        _ => {
            // Several non-null types (rare): one branch each, sharing the constraints.
            let mut shared = take_constraints(object);
            shared.remove("type");
            let mut branches: Vec<Value> = types
                .into_iter()
                .map(|t| {
                    let mut branch = shared.clone();
                    branch.insert("type".into(), t);
                    Value::Object(branch)
                })
                .collect();
            if nullable {
                branches.push(serde_json::json!({"type": "null"}));
            }
            object.insert("anyOf".into(), Value::Array(branches));
            return;
        }
    };
    let mut branch = take_constraints(object);
    branch.insert("type".into(), branch_type);
    object.insert(
        "anyOf".into(),
        Value::Array(vec![
            Value::Object(branch),
            serde_json::json!({"type": "null"}),
        ]),
    );
}

/// Moves every keyword but the annotations (and `x-` extensions) out of `object`.
fn take_constraints(object: &mut Map<String, Value>) -> Map<String, Value> {
    let keys: Vec<String> = object
        .keys()
        .filter(|k| !ANNOTATIONS.contains(&k.as_str()) && !k.starts_with("x-"))
        .cloned()
        .collect();
    keys.into_iter()
        .filter_map(|k| object.remove(&k).map(|v| (k, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use schemars::JsonSchema;
    use serde_json::json;

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    struct Input {
        /// How many.
        count: u64,
        small: u8,
        ratio: f64,
        limit: Option<u32>,
        any: Vec<serde_json::Value>,
        nested: Option<Inner>,
        when: Option<String>,
    }

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    struct Inner {
        size: Option<i64>,
    }

    /// Every schema object inside `value`, the value itself included.
    fn all(value: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        match value {
            serde_json::Value::Object(map) => {
                out.push(value.clone());
                map.values().for_each(|v| all(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| all(v, out)),
            _ => {}
        }
    }

    #[test]
    fn generated_schemas_are_portable_and_validate_the_same() {
        let schema = crate::schema_for::<Input>();
        let value = schema.as_value();
        let mut objects = Vec::new();
        all(value, &mut objects);
        for object in &objects {
            if let Some(format) = object.get("format").and_then(|f| f.as_str()) {
                assert!(
                    super::STANDARD_FORMATS.contains(&format),
                    "{format} in {value}"
                );
            }
            assert_ne!(object.get("items"), Some(&json!(true)), "{value}");
            assert!(!object.get("type").is_some_and(|t| t.is_array()), "{value}");
        }
        let count = &value["properties"]["count"];
        assert_eq!(count["type"], "integer");
        assert_eq!(count["minimum"], 0, "unsigned is still said: {count}");
        assert_eq!(count["description"], "How many.");
        let limit = &value["properties"]["limit"];
        assert_eq!(
            limit["anyOf"],
            json!([{"type": "integer", "minimum": 0}, {"type": "null"}]),
            "{limit}"
        );

        // A strict 2020-12 validator takes the schema, and it accepts and refuses what the
        // Rust type does.
        assert!(jsonschema::meta::is_valid(value), "{value}");
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(value)
            .unwrap();
        let good = json!({"count": 3, "small": 255, "ratio": 0.5, "limit": null,
            "any": [1, "x", {}], "nested": {"size": -4}, "when": "now"});
        assert!(validator.is_valid(&good), "{good}");
        for bad in [
            json!({"count": -1, "small": 1, "ratio": 1.0, "any": []}),
            json!({"count": 1, "small": 256, "ratio": 1.0, "any": []}),
            json!({"count": 1, "small": 1, "ratio": 1.0, "any": [], "limit": -2}),
            json!({"count": 1, "small": 1, "ratio": 1.0, "any": [], "limit": "7"}),
            json!({"count": 1, "small": 1, "ratio": 1.0, "any": [], "nested": {"size": 1.5}}),
        ] {
            assert!(!validator.is_valid(&bad), "{bad} passed");
        }
    }

    #[test]
    fn several_types_with_null_keep_their_constraints() {
        let mut schema: schemars::Schema =
            json!({"type": ["string", "integer", "null"], "minLength": 1, "description": "d"})
                .try_into()
                .unwrap();
        super::portable(&mut schema);
        assert_eq!(
            schema.as_value(),
            &json!({"description": "d", "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "integer", "minLength": 1},
                {"type": "null"},
            ]})
        );
    }
}
