//! One value, one meaning: JSON that different parsers could read differently is refused.
//!
//! serde_json (and so rmcp) keeps the *last* of two equal keys; other parsers keep the first or
//! fail. A message with a duplicate key anywhere is refused before anything builds it, on every
//! transport, so that policy, audit and tool can never disagree about what was sent.

use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// "an object", "a string", …: a JSON value's kind, for error messages.
pub fn kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Walks a document, failing on the first object with a repeated key.
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: HashSet<std::borrow::Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if keys.contains(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key `{}`",
                    key.escape_debug()
                )));
            }
            map.next_value_seed(Unique)?;
            keys.insert(key);
        }
        Ok(())
    }
}

/// `Err` naming the first duplicate key in `bytes`. Text that is not JSON passes: whoever
/// parses it next reports that, in its own words.
pub fn check_unique_keys(bytes: &[u8]) -> Result<(), String> {
    match check(bytes) {
        Err(Problem::Duplicate(e)) => Err(e),
        _ => Ok(()),
    }
}

/// What is wrong with a document, found in one pass that builds nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// Valid JSON with a repeated key (named).
    Duplicate(String),
    /// Not one JSON value: truncated, malformed, empty or followed by more text.
    Syntax(String),
}

/// Whether `bytes` is exactly one JSON value with no repeated key.
pub fn check(bytes: &[u8]) -> Result<(), Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // The caller has already bounded the depth; serde's own recursion guard stays on as well.
    match Unique.deserialize(&mut deserializer) {
        Err(e) if e.is_data() => Err(Problem::Duplicate(e.to_string())),
        Err(e) => Err(Problem::Syntax(e.to_string())),
        Ok(()) => deserializer
            .end()
            .map_err(|e| Problem::Syntax(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::check_unique_keys;

    #[test]
    fn duplicates_are_found_at_any_depth() {
        assert!(check_unique_keys(br#"{"a": 1, "b": {"c": [1, {"d": 2}]}}"#).is_ok());
        let e = check_unique_keys(br#"{"a": {"x": 1, "y": [{"k": 1, "k": 2}]}}"#).unwrap_err();
        assert!(e.contains("duplicate key `k`"), "{e}");
        // Escapes are compared after decoding: "\u0061" is "a".
        let e = check_unique_keys(br#"{"a": 1, "\u0061": 2}"#).unwrap_err();
        assert!(e.contains("duplicate key `a`"), "{e}");
        assert!(
            check_unique_keys(br#"{"a": 1, "a"#).is_ok(),
            "not JSON: for the parser to say"
        );
    }

    #[test]
    fn text_that_is_not_one_json_value_is_a_syntax_problem() {
        use super::{Problem, check};
        assert_eq!(check(br#" {"a": [1, 2]} "#), Ok(()));
        for bad in [
            &b""[..],
            b"  ",
            b"not json",
            br#"{"a": 1"#,
            br#"{"a": 1} {"b": 2}"#,
            b"[1,]",
        ] {
            assert!(
                matches!(check(bad), Err(Problem::Syntax(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            check(br#"{"a":1,"a":2}"#),
            Err(Problem::Duplicate(_))
        ));
    }
}
