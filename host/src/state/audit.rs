//! The audit half of the store: one append-only, hash-chained trail.
//!
//! Each record's body is JSON text that begins with its sequence number and the hash of the
//! record before it (`{"seq":N,"prev":"…",…}`); its hash is the SHA-256 of that text. Sequence
//! numbers have no gaps, so a deleted record, two swapped ones or an edited one break the chain
//! at exactly that record. The backend assigns `seq` and `prev` inside the transaction that
//! appends, so several processes sharing one store still write one chain. What the fields mean
//! and how the chain is checked is [`crate::audit`]'s; the store only appends and reads.

use sha2::{Digest, Sha256};

use super::Pending;

/// The `prev` of the first record ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A record to append: the filter columns and the body's fields.
#[derive(Clone, Debug)]
pub struct AuditAppend {
    pub kind: &'static str,
    pub at_ms: u64,
    pub job: Option<String>,
    pub principal: Option<String>,
    pub tool: Option<String>,
    pub outcome: Option<String>,
    /// The body without `seq` and `prev`: a JSON object as text, whose own fields include
    /// these columns (the verifier checks that they agree).
    pub fields: String,
}

/// A stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: u64,
    pub at_ms: u64,
    pub kind: String,
    pub job: Option<String>,
    pub principal: Option<String>,
    pub tool: Option<String>,
    pub outcome: Option<String>,
    pub body: String,
    pub hash: String,
}

/// Which records to read, oldest first (unless `newest_first`).
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only records after this sequence number.
    pub after: u64,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub job: Option<String>,
    pub principal: Option<String>,
    pub tool: Option<String>,
    pub outcome: Option<String>,
    pub kind: Option<String>,
    pub limit: u32,
    /// The newest `limit` records, newest first.
    pub newest_first: bool,
}

/// Signs the trail's tail: given what a checkpoint or pruning marker covers, the fields of the
/// record that vouches for it (kind, what it covers, the key, the signature).
pub trait Sealer: Send + Sync {
    fn seal(&self, kind: &'static str, seq: u64, hash: &str, at_ms: u64) -> AuditAppend;
}

/// What pruning removed, and the marker that says so.
#[derive(Clone, Debug)]
pub struct Pruned {
    pub removed: u64,
    pub marker: AuditRow,
}

/// The body of record `seq`: its sequence number and predecessor's hash, then `fields`.
pub fn chain_body(seq: u64, prev: &str, fields: &str) -> String {
    let rest = fields.trim_start().strip_prefix('{').unwrap_or("}");
    let rest = rest.trim_start();
    let separator = if rest.starts_with('}') { "" } else { "," };
    format!("{{\"seq\":{seq},\"prev\":\"{prev}\"{separator}{rest}")
}

/// The hash a record's body is chained by.
pub fn chain_hash(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

pub trait AuditStore {
    /// Appends `records` in order, chained to the trail's tail; the last one's sequence number.
    fn audit_append(&self, records: Vec<AuditAppend>) -> Pending<u64>;
    /// Appends a checkpoint over the trail's last record, unless that record is a checkpoint
    /// already (nothing new to seal): the checkpoint, if one was written.
    fn audit_checkpoint(&self, sealer: std::sync::Arc<dyn Sealer>) -> Pending<Option<AuditRow>>;
    fn audit_read(&self, query: AuditQuery) -> Pending<Vec<AuditRow>>;
    /// Deletes the records older than `before_ms` (never the newest) and appends a signed
    /// marker naming the last one removed, so that the trail still verifies.
    fn audit_prune(
        &self,
        before_ms: u64,
        sealer: std::sync::Arc<dyn Sealer>,
    ) -> Pending<Option<Pruned>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_begin_with_seq_and_prev() {
        assert_eq!(
            chain_body(3, "ab", r#"{"kind":"x"}"#),
            r#"{"seq":3,"prev":"ab","kind":"x"}"#
        );
        assert_eq!(chain_body(1, "ab", "{}"), r#"{"seq":1,"prev":"ab"}"#);
        let v: serde_json::Value = serde_json::from_str(&chain_body(1, "ab", " { } ")).unwrap();
        assert_eq!(v["seq"], 1);
    }
}
