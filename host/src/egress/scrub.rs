//! Scrubbing secret values out of what comes back: response headers and bodies (streamed, across
//! chunk boundaries), and the call's result, logs and errors.
//!
//! Each value is replaced by `[redacted:NAME]`. What is scrubbed is the value as it would appear
//! verbatim; an upstream that transforms it (compresses, re-encodes, returns part of it) is
//! beyond a byte match — which is why requests that carry an injected credential ask for an
//! identity encoding and compressed answers to them are refused.

use std::sync::Arc;

use zeroize::Zeroizing;

/// The secret values of one call, with their names.
#[derive(Clone, Default)]
pub struct Scrubber {
    secrets: Arc<Vec<(String, Zeroizing<Vec<u8>>)>>,
    longest: usize,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.secrets.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Scrubber").field("names", &names).finish()
    }
}

impl Scrubber {
    /// Values shorter than this are not scrubbed (they would match everywhere); secrets that
    /// short are refused when configured.
    pub const MIN_LEN: usize = 4;

    pub fn new(secrets: Vec<(String, Zeroizing<Vec<u8>>)>) -> Self {
        let mut secrets: Vec<_> = secrets
            .into_iter()
            .filter(|(_, v)| v.len() >= Self::MIN_LEN)
            .collect();
        // Longest first: a value that contains another is replaced whole.
        secrets.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let longest = secrets.first().map_or(0, |(_, v)| v.len());
        Self {
            secrets: Arc::new(secrets),
            longest,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Scrubs a complete text.
    pub fn text(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        let mut out = Vec::with_capacity(text.len());
        let held = self.feed(text.as_bytes(), &mut out, true);
        debug_assert_eq!(held, 0);
        // Replacements are ASCII and whole values are replaced: the result stays UTF-8.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Scrubs bytes (binary content: a match is replaced even there).
    pub fn bytes(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        self.feed(data, &mut out, true);
        out
    }

    /// Whether `text` holds a secret's value (one this scrubber would replace).
    pub fn finds(&self, text: &str) -> bool {
        self.secrets
            .iter()
            .any(|(_, v)| contains(text.as_bytes(), v))
    }

    /// Scrubs in place, if anything matches.
    pub fn text_in_place(&self, text: &mut String) {
        if self.finds(text) {
            *text = self.text(text);
        }
    }

    /// Scrubs `input` into `out`; unless `last`, keeps back a tail that could be the start of a
    /// value and returns its length (the caller passes it again in front of the next chunk).
    fn feed(&self, input: &[u8], out: &mut Vec<u8>, last: bool) -> usize {
        let mut i = 0;
        'outer: while i < input.len() {
            for (name, value) in self.secrets.iter() {
                let rest = &input[i..];
                if rest.starts_with(value) {
                    out.extend_from_slice(b"[redacted:");
                    out.extend_from_slice(name.as_bytes());
                    out.push(b']');
                    i += value.len();
                    continue 'outer;
                }
                if !last && rest.len() < value.len() && value.starts_with(rest) {
                    return input.len() - i;
                }
            }
            out.push(input[i]);
            i += 1;
        }
        0
    }

    /// A streaming scrubber for one body.
    pub fn stream(&self) -> StreamScrubber {
        StreamScrubber {
            scrubber: self.clone(),
            held: Vec::new(),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Scrubs a body chunk by chunk, holding back at most one value's length.
pub struct StreamScrubber {
    scrubber: Scrubber,
    held: Vec<u8>,
}

impl StreamScrubber {
    /// The scrubbed bytes that are final after `chunk`.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.scrubber.is_empty() {
            return chunk.to_vec();
        }
        let mut input = std::mem::take(&mut self.held);
        input.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(input.len());
        let held = self.scrubber.feed(&input, &mut out, false);
        debug_assert!(held < self.scrubber.longest.max(1));
        self.held = input[input.len() - held..].to_vec();
        out
    }

    /// What is left at the end of the body.
    pub fn finish(&mut self) -> Vec<u8> {
        let input = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(input.len());
        self.scrubber.feed(&input, &mut out, true);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber() -> Scrubber {
        Scrubber::new(vec![
            ("TOKEN".into(), Zeroizing::new(b"s3cr3t-value".to_vec())),
            ("KEY".into(), Zeroizing::new(b"k3y-k3y".to_vec())),
            ("TINY".into(), Zeroizing::new(b"ab".to_vec())),
        ])
    }

    #[test]
    fn whole_texts_are_scrubbed() {
        let s = scrubber();
        assert_eq!(
            s.text("Bearer s3cr3t-value and k3y-k3y, ab"),
            "Bearer [redacted:TOKEN] and [redacted:KEY], ab"
        );
        let mut t = "x s3cr3t-values3cr3t-value".to_string();
        s.text_in_place(&mut t);
        assert_eq!(t, "x [redacted:TOKEN][redacted:TOKEN]");
    }

    #[test]
    fn values_split_across_chunks_are_scrubbed_at_every_split() {
        let s = scrubber();
        let body = b"head s3cr3t-value mid s3cr3t-k3y-k3y tail s3cr3t-valu";
        let want = s.text(std::str::from_utf8(body).unwrap());
        for split in 0..body.len() {
            for split2 in split..body.len() {
                let mut st = s.stream();
                let mut out = st.push(&body[..split]);
                out.extend(st.push(&body[split..split2]));
                out.extend(st.push(&body[split2..]));
                out.extend(st.finish());
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    want,
                    "split at {split}/{split2}"
                );
            }
        }
        // One byte at a time.
        let mut st = s.stream();
        let mut out = Vec::new();
        for b in body {
            out.extend(st.push(std::slice::from_ref(b)));
        }
        out.extend(st.finish());
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert!(!want.contains("s3cr3t-value"));
    }
}
