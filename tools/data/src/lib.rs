//! `data`: pure data tools that need no capabilities at all — a JSON query and hashing.

use portcullis_sdk::{Annotations, Error, Output, Tool, Value, export_tools, schema_for};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// One step of a query path.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    Wildcard,
}

/// Parses the JSONPath subset `$`, `.key`, `["key"]`, `[n]`, `[*]` and `.*`.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let rest = path
        .strip_prefix('$')
        .ok_or_else(|| format!("path `{path}` must start with `$`"))?;
    let chars: Vec<char> = rest.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && chars[end] != '.' && chars[end] != '[' {
                    end += 1;
                }
                let key: String = chars[start..end].iter().collect();
                if key.is_empty() {
                    return Err(format!("empty key after `.` at position {}", i + 1));
                }
                steps.push(if key == "*" {
                    Step::Wildcard
                } else {
                    Step::Key(key)
                });
                i = end;
            }
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|p| p + i)
                    .ok_or_else(|| format!("unclosed `[` at position {}", i + 1))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                steps.push(if inner == "*" {
                    Step::Wildcard
                } else if let Some(quoted) = inner
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .or_else(|| inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                {
                    Step::Key(quoted.to_string())
                } else {
                    Step::Index(
                        inner.parse().map_err(|_| {
                            format!("`[{inner}]` is not an index, `*` or a quoted key")
                        })?,
                    )
                });
                i = close + 1;
            }
            other => return Err(format!("unexpected `{other}` at position {}", i + 1)),
        }
    }
    Ok(steps)
}

fn select<'a>(value: &'a Value, steps: &[Step], out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(value);
        return;
    };
    match (step, value) {
        (Step::Key(key), Value::Object(map)) => {
            if let Some(v) = map.get(key) {
                select(v, rest, out);
            }
        }
        (Step::Index(i), Value::Array(items)) => {
            if let Some(v) = items.get(*i) {
                select(v, rest, out);
            }
        }
        (Step::Wildcard, Value::Array(items)) => items.iter().for_each(|v| select(v, rest, out)),
        (Step::Wildcard, Value::Object(map)) => map.values().for_each(|v| select(v, rest, out)),
        _ => {}
    }
}

/// Input of `json_query`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JsonQueryInput {
    /// The JSON document to query.
    document: Value,
    /// A JSONPath subset: `$`, `.key`, `["key"]`, `[n]`, `[*]`, `.*` — e.g. `$.items[*].name`.
    #[schemars(length(min = 1, max = 1024))]
    path: String,
}

/// Output of `json_query`.
#[derive(Serialize, JsonSchema)]
struct QueryResult {
    /// Every value the path selects, in document order.
    matches: Vec<Value>,
}

struct JsonQuery;

impl Tool for JsonQuery {
    type Input = JsonQueryInput;
    const NAME: &'static str = "json_query";
    const TITLE: Option<&'static str> = Some("Query JSON");
    const DESCRIPTION: &'static str = "Selects values from a JSON document with a JSONPath subset \
        (`$.items[*].name`, `$.a[\"b c\"][0]`, `$.*`).";
    const ANNOTATIONS: Annotations = Annotations::READ_ONLY;

    fn output_schema() -> Option<portcullis_sdk::schemars::Schema> {
        Some(schema_for::<QueryResult>())
    }

    fn call(input: JsonQueryInput) -> Result<Output, Error> {
        let steps = parse_path(&input.path).map_err(Error::invalid_input)?;
        let mut matches = Vec::new();
        select(&input.document, &steps, &mut matches);
        Output::structured(&QueryResult {
            matches: matches.into_iter().cloned().collect(),
        })
    }
}

/// Hash functions offered by `hash`.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Algorithm {
    Sha256,
    Sha512,
}

/// Input of `hash`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HashInput {
    /// The text to hash (its UTF-8 bytes).
    text: String,
    /// The hash function (default sha256).
    #[serde(default = "sha256")]
    algorithm: Algorithm,
}

fn sha256() -> Algorithm {
    Algorithm::Sha256
}

/// Output of `hash`.
#[derive(Serialize, JsonSchema)]
struct HashOutput {
    algorithm: &'static str,
    /// Lower-case hex digest.
    hex: String,
}

struct Hash;

impl Tool for Hash {
    type Input = HashInput;
    const NAME: &'static str = "hash";
    const TITLE: Option<&'static str> = Some("Hash text");
    const DESCRIPTION: &'static str = "Computes the SHA-256 or SHA-512 digest of a text.";
    const ANNOTATIONS: Annotations = Annotations::READ_ONLY;

    fn output_schema() -> Option<portcullis_sdk::schemars::Schema> {
        Some(schema_for::<HashOutput>())
    }

    fn call(input: HashInput) -> Result<Output, Error> {
        let (algorithm, digest) = match input.algorithm {
            Algorithm::Sha256 => ("sha256", Sha256::digest(input.text.as_bytes()).to_vec()),
            Algorithm::Sha512 => ("sha512", Sha512::digest(input.text.as_bytes()).to_vec()),
        };
        Output::structured(&HashOutput {
            algorithm,
            hex: hex::encode(digest),
        })
    }
}

export_tools!(JsonQuery, Hash);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_sdk::json;

    fn query(doc: Value, path: &str) -> Vec<Value> {
        let steps = parse_path(path).expect("path parses");
        let mut out = Vec::new();
        select(&doc, &steps, &mut out);
        out.into_iter().cloned().collect()
    }

    #[test]
    fn paths_select_what_they_say() {
        let doc = json!({"items": [{"name": "a"}, {"name": "b"}], "x y": {"z": 1}});
        assert_eq!(
            query(doc.clone(), "$.items[*].name"),
            vec![json!("a"), json!("b")]
        );
        assert_eq!(query(doc.clone(), "$.items[1]"), vec![json!({"name": "b"})]);
        assert_eq!(query(doc.clone(), "$[\"x y\"].z"), vec![json!(1)]);
        assert_eq!(query(doc.clone(), "$.missing"), Vec::<Value>::new());
        assert_eq!(
            query(doc, "$"),
            vec![json!({"items": [{"name": "a"}, {"name": "b"}], "x y": {"z": 1}})]
        );
    }

    #[test]
    fn bad_paths_say_why() {
        assert!(
            parse_path("items")
                .unwrap_err()
                .contains("must start with `$`")
        );
        assert!(parse_path("$.a[").unwrap_err().contains("unclosed"));
        assert!(parse_path("$[x]").unwrap_err().contains("not an index"));
        assert!(parse_path("$.").unwrap_err().contains("empty key"));
    }
}
