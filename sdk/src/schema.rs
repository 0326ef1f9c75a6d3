//! Schemas that every client reads the same way. schemars writes a few things that are valid
//! JSON Schema but that strict validators and several MCP clients warn on or refuse:
//! non-standard `format`s (`uint64`, `int32`, `double`…), `items: true`, and type lists such as
//! `type: ["integer", "null"]`. [`portable`] rewrites them without changing what validates:
//! the formats go (a `minimum` already says "unsigned"; formats are annotations in 2020-12),
//! `items: true` goes (it allows anything, as no `items` does — unless `unevaluatedItems` is
//! beside it, where it counts), and a type list becomes `anyOf` of one `type` each. Every
//! other keyword stays where it was: the type-specific ones (`minimum`, `properties`…) apply
//! only to instances of their type anyway, and the rest (`enum`, `$ref`, `$defs`…) to all.

use schemars::Schema;
use schemars::transform::transform_subschemas;
use serde_json::{Map, Value, json};

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
    if object.get("items") == Some(&Value::Bool(true)) && !object.contains_key("unevaluatedItems") {
        object.remove("items");
    }
    let Some(Value::Array(types)) = object.get("type") else {
        return;
    };
    let mut types = types.clone();
    types.dedup();
    if let [one] = types.as_slice() {
        object.insert("type".into(), one.clone());
        return;
    }
    object.remove("type");
    let choice = Value::Array(types.into_iter().map(|t| json!({ "type": t })).collect());
    match object.remove("anyOf") {
        // Both must hold: the existing `anyOf` and one of the types.
        Some(existing) => {
            let mut all = match object.remove("allOf") {
                Some(Value::Array(all)) => all,
                Some(other) => vec![other],
                None => Vec::new(),
            };
            all.push(json!({ "anyOf": existing }));
            all.push(json!({ "anyOf": choice }));
            object.insert("allOf".into(), Value::Array(all));
        }
        None => {
            object.insert("anyOf".into(), choice);
        }
    }
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
            json!([{"type": "integer"}, {"type": "null"}]),
            "{limit}"
        );
        assert_eq!(limit["minimum"], 0, "{limit}");

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
    fn what_validates_is_unchanged() {
        let cases = [
            (
                json!({"type": ["string", "integer", "null"], "minLength": 2, "minimum": 3, "description": "d"}),
                vec![
                    json!("ab"),
                    json!(3),
                    json!(null),
                    json!("a"),
                    json!(2),
                    json!(1.5),
                    json!([]),
                ],
            ),
            (
                json!({"type": ["string", "null"], "enum": ["a", "b"]}),
                vec![json!("a"), json!("c"), json!(null)],
            ),
            (
                json!({"type": ["object", "null"], "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}),
                vec![json!({"a": 1}), json!({"c": 1}), json!(null), json!(1)],
            ),
            (
                json!({"type": "array", "items": true, "prefixItems": [{"type": "integer"}]}),
                vec![json!([1, "x"]), json!(["x"]), json!([])],
            ),
            (
                json!({"type": "integer", "format": "uint64", "minimum": 0}),
                vec![json!(1), json!(-1), json!("1")],
            ),
        ];
        for (original, instances) in cases {
            let mut schema: schemars::Schema = original.clone().try_into().unwrap();
            super::portable(&mut schema);
            let rewritten = schema.as_value();
            assert!(jsonschema::meta::is_valid(rewritten), "{rewritten}");
            let before = jsonschema::validator_for(&original).unwrap();
            let after = jsonschema::validator_for(rewritten).unwrap();
            for instance in &instances {
                assert_eq!(
                    before.is_valid(instance),
                    after.is_valid(instance),
                    "{instance} against {original} → {rewritten}"
                );
            }
        }
        // `items: true` stays where `unevaluatedItems` would count it.
        let mut kept: schemars::Schema = json!({"items": true, "unevaluatedItems": false})
            .try_into()
            .unwrap();
        super::portable(&mut kept);
        assert_eq!(kept.as_value()["items"], json!(true));
    }
}
