//! Resources, resource templates and prompts as components describe them: checked and pinned
//! at load like tools, and the URI templates that route a read to its component.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::LoadedComponent;
use super::descriptor::{MAX_DESCRIPTION, pin, valid_name, warnings};
use crate::runner::{PromptInfo, ResourceInfo, ResourceTemplate};

/// Longest accepted URI or URI template.
const MAX_URI: usize = 2048;
/// Most arguments a prompt may declare.
const MAX_PROMPT_ARGUMENTS: usize = 32;

/// What a resource, a template and a prompt share: who serves it, its pinned digest, and texts.
#[derive(Clone, Debug, Serialize)]
pub struct ItemText {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
}

/// A resource with a fixed URI.
pub struct ResourceEntry {
    pub uri: String,
    pub text: ItemText,
    pub mime_type: Option<String>,
    pub size: Option<u64>,
    pub digest: String,
    pub warnings: Vec<String>,
    pub component: Arc<LoadedComponent>,
}

/// A family of resources under one URI template.
pub struct TemplateEntry {
    pub template: UriTemplate,
    pub text: ItemText,
    pub mime_type: Option<String>,
    pub digest: String,
    pub warnings: Vec<String>,
    pub component: Arc<LoadedComponent>,
}

/// One declared argument of a prompt.
#[derive(Clone, Debug, Serialize)]
pub struct PromptArg {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub required: bool,
}

/// A prompt.
pub struct PromptEntry {
    pub text: ItemText,
    pub arguments: Vec<PromptArg>,
    pub digest: String,
    pub warnings: Vec<String>,
    pub component: Arc<LoadedComponent>,
}

fn check_description(what: &str, description: &Option<String>) -> Result<(), String> {
    match description {
        Some(d) if d.len() > MAX_DESCRIPTION => Err(format!(
            "{what}: description is {} bytes; the limit is {MAX_DESCRIPTION}",
            d.len()
        )),
        _ => Ok(()),
    }
}

/// A URI as components may declare one: a scheme, no whitespace or control characters.
fn check_uri(what: &str, uri: &str) -> Result<(), String> {
    let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or_default();
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if uri.len() > MAX_URI || !scheme_ok || uri.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{what} `{}` is invalid: a URI with a scheme, at most {MAX_URI} bytes, without spaces",
            uri.escape_debug()
        ));
    }
    Ok(())
}

/// Checks and pins a fixed resource.
pub fn resource(
    info: ResourceInfo,
    component: &Arc<LoadedComponent>,
) -> Result<ResourceEntry, String> {
    check_uri("resource URI", &info.uri)?;
    let what = format!("resource `{}`", info.uri);
    if info.name.is_empty() {
        return Err(format!("{what}: the name is empty"));
    }
    check_description(&what, &info.description)?;
    let text = ItemText {
        name: info.name,
        title: info.title,
        description: info.description,
    };
    let digest = pin(
        &json!({"uri": info.uri, "text": text, "mime_type": info.mime_type, "size": info.size}),
    )
    .map_err(|e| format!("{what}: {e}"))?;
    Ok(ResourceEntry {
        warnings: warnings([text.description.as_ref(), text.title.as_ref()]),
        uri: info.uri,
        text,
        mime_type: info.mime_type,
        size: info.size,
        digest,
        component: component.clone(),
    })
}

/// Checks and pins a resource template.
pub fn template(
    info: ResourceTemplate,
    component: &Arc<LoadedComponent>,
) -> Result<TemplateEntry, String> {
    let template = UriTemplate::parse(&info.uri_template)?;
    let what = format!("resource template `{}`", info.uri_template);
    if info.name.is_empty() {
        return Err(format!("{what}: the name is empty"));
    }
    check_description(&what, &info.description)?;
    let text = ItemText {
        name: info.name,
        title: info.title,
        description: info.description,
    };
    let digest =
        pin(&json!({"uri_template": info.uri_template, "text": text, "mime_type": info.mime_type}))
            .map_err(|e| format!("{what}: {e}"))?;
    Ok(TemplateEntry {
        warnings: warnings([text.description.as_ref(), text.title.as_ref()]),
        template,
        text,
        mime_type: info.mime_type,
        digest,
        component: component.clone(),
    })
}

/// Checks and pins a prompt.
pub fn prompt(info: PromptInfo, component: &Arc<LoadedComponent>) -> Result<PromptEntry, String> {
    if !valid_name(&info.name) {
        return Err(format!(
            "prompt name `{}` is invalid: use 1-64 characters from [a-zA-Z0-9_-]",
            info.name.escape_debug()
        ));
    }
    let what = format!("prompt `{}`", info.name);
    check_description(&what, &info.description)?;
    if info.arguments.len() > MAX_PROMPT_ARGUMENTS {
        return Err(format!(
            "{what}: {} arguments; the limit is {MAX_PROMPT_ARGUMENTS}",
            info.arguments.len()
        ));
    }
    let mut arguments: Vec<PromptArg> = Vec::new();
    for a in info.arguments {
        if !valid_name(&a.name) {
            return Err(format!(
                "{what}: argument name `{}` is invalid: use 1-64 characters from [a-zA-Z0-9_-]",
                a.name.escape_debug()
            ));
        }
        if arguments.iter().any(|b| b.name == a.name) {
            return Err(format!(
                "{what}: the argument `{}` is declared twice",
                a.name
            ));
        }
        check_description(&format!("{what}, argument `{}`", a.name), &a.description)?;
        arguments.push(PromptArg {
            name: a.name,
            title: a.title,
            description: a.description,
            required: a.required,
        });
    }
    let text = ItemText {
        name: info.name,
        title: info.title,
        description: info.description,
    };
    let digest =
        pin(&json!({"text": text, "arguments": arguments})).map_err(|e| format!("{what}: {e}"))?;
    let mut texts = vec![text.description.as_ref(), text.title.as_ref()];
    texts.extend(arguments.iter().map(|a| a.description.as_ref()));
    Ok(PromptEntry {
        warnings: warnings(texts),
        text,
        arguments,
        digest,
        component: component.clone(),
    })
}

/// One part of a URI template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

/// An RFC 6570 URI template of literals and simple expressions (`{name}`).
#[derive(Clone, Debug)]
pub struct UriTemplate {
    text: String,
    parts: Vec<Part>,
}

impl UriTemplate {
    /// Parses `text`; operators (`{+x}`, `{?x}` …), lists (`{a,b}`), modifiers and two
    /// adjacent expressions are refused, so that every match is unambiguous.
    pub fn parse(text: &str) -> Result<Self, String> {
        check_uri("resource template", text)?;
        let refuse = |why: &str| {
            Err(format!(
                "resource template `{}`: {why}",
                text.escape_debug()
            ))
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let Some(end) = rest.find('}') else {
                        return refuse("an expression is not closed with `}`");
                    };
                    let name = &rest[1..end];
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return refuse(
                            "only simple expressions such as {id} are supported (letters, digits and _)",
                        );
                    }
                    if matches!(parts.last(), Some(Part::Variable(_))) {
                        return refuse("two expressions must be separated by literal text");
                    }
                    if parts.contains(&Part::Variable(name.to_string())) {
                        return refuse("a variable appears twice");
                    }
                    parts.push(Part::Variable(name.to_string()));
                    rest = &rest[end + 1..];
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    if rest[..end].contains('}') {
                        return refuse("a `}` without its `{`");
                    }
                    parts.push(Part::Literal(rest[..end].to_string()));
                    rest = &rest[end..];
                }
            }
        }
        if !parts.iter().any(|p| matches!(p, Part::Variable(_))) {
            return refuse("it has no expression; declare a fixed resource instead");
        }
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }

    /// The template as declared.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The variables' names, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The variables of `uri` if it matches: each variable takes one or more characters other
    /// than `/`, `?` and `#` (the shortest that lets the next literal follow), percent-decoded.
    pub fn matches(&self, uri: &str) -> Option<Vec<(String, String)>> {
        let mut rest = uri;
        let mut values = Vec::new();
        let mut parts = self.parts.iter().peekable();
        while let Some(part) = parts.next() {
            match part {
                Part::Literal(lit) => rest = rest.strip_prefix(lit.as_str())?,
                Part::Variable(name) => {
                    let end = match parts.peek() {
                        Some(Part::Literal(next)) => rest.find(next.as_str())?,
                        _ => rest.len(),
                    };
                    let raw = &rest[..end];
                    if raw.is_empty() || raw.contains(['/', '?', '#']) {
                        return None;
                    }
                    values.push((name.clone(), percent_decode(raw)?));
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then_some(values)
    }
}

/// `%XX` sequences decoded; `None` for a malformed sequence or bytes that are not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_simple_expressions_only() {
        let t = UriTemplate::parse("test://template/{id}/data").unwrap();
        assert_eq!(
            t.matches("test://template/123/data"),
            Some(vec![("id".into(), "123".into())])
        );
        assert_eq!(
            t.matches("test://template/a%20b/data"),
            Some(vec![("id".into(), "a b".into())])
        );
        for miss in [
            "test://template//data",
            "test://template/1/2/data",
            "test://template/1/data/x",
            "test://template/%zz/data",
            "test://template/%ff/data",
            "other://template/1/data",
        ] {
            assert_eq!(t.matches(miss), None, "{miss}");
        }
        let two = UriTemplate::parse("db://{schema}/tables/{table}").unwrap();
        assert_eq!(
            two.matches("db://public/tables/users"),
            Some(vec![
                ("schema".into(), "public".into()),
                ("table".into(), "users".into())
            ])
        );
        assert_eq!(two.matches("db://public/tables/users?x"), None);
        for bad in [
            "test://{+path}",
            "test://{a,b}",
            "test://{a}{b}",
            "test://{a}/{a}",
            "test://{a",
            "test://a}",
            "test://fixed",
            "no scheme {x}",
        ] {
            assert!(UriTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
