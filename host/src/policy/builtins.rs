//! Builtins a policy may not call, rejected when the policy is loaded. regorus would make
//! some of them silently undefined (e.g. `http.send`), which is worse than an error; the others
//! reach outside the gateway or make decisions unrepeatable.

use anyhow::{Result, bail};

/// Denied builtins and what to use instead.
const DENIED: &[(&str, &str)] = &[
    ("http.send", "policies may not make network requests"),
    ("net.lookup_ip_addr", "policies may not resolve names"),
    (
        "opa.runtime",
        "policies may not read the gateway's environment",
    ),
    (
        "time.now_ns",
        "use input.context.time so decisions are repeatable",
    ),
    ("rand.intn", "decisions must be repeatable"),
    ("uuid.rfc4122", "decisions must be repeatable"),
];

/// The source with comments and string contents blanked, so that a builtin's name inside a
/// string or comment is not mistaken for a call.
pub(super) fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push(' ');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        '\n' => out.push('\n'),
                        _ => {}
                    }
                }
            }
            '`' => {
                out.push(' ');
                for c in chars.by_ref() {
                    if c == '`' {
                        break;
                    }
                    if c == '\n' {
                        out.push('\n');
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Rejects a module that calls a denied builtin, naming the file, line and builtin. A call is
/// the name followed by `(`, with any white space between, line breaks included.
pub fn check(file: &str, text: &str) -> Result<()> {
    let code = code_only(text);
    for (name, why) in DENIED {
        let mut from = 0;
        while let Some(found) = code[from..].find(name) {
            let at = from + found;
            let before = code[..at].chars().next_back();
            let after = code[at + name.len()..].trim_start().chars().next();
            let word_start = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
            if word_start && after == Some('(') {
                let line = code[..at].matches('\n').count() + 1;
                bail!("{file}:{line}: the builtin `{name}` is not allowed ({why})");
            }
            from = at + name.len();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn denied_builtins_are_rejected_with_their_line() {
        let policy = "package p\n\nx := http.send({\"url\": \"http://169.254.169.254\"})\n";
        let error = check("p.rego", policy).unwrap_err().to_string();
        assert_eq!(
            error,
            "p.rego:3: the builtin `http.send` is not allowed (policies may not make network requests)"
        );
        assert!(check("p.rego", "t := time.now_ns ()").is_err());
        let split = check("p.rego", "package p\nt := time.now_ns\n\t(\n)\n").unwrap_err();
        assert!(split.to_string().starts_with("p.rego:2:"), "{split}");
    }

    #[test]
    fn names_in_strings_and_comments_are_fine() {
        assert!(
            check(
                "p.rego",
                "# http.send(x) is denied\nmsg := \"no http.send(here)\""
            )
            .is_ok()
        );
        assert!(check("p.rego", "x := my_http.send(1)").is_ok());
        assert!(check("p.rego", "x := `raw http.send(1)`").is_ok());
    }
}
