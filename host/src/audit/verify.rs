//! Checking a trail: the chain, the signatures, and the head that proves how far it went.
//!
//! Records are fed oldest first ([`Verifier::push`]); the first record that breaks the chain is
//! the answer, with why. A record's body must hash to its stored hash (else it was edited), name
//! its own sequence number (else records were swapped or replaced) and its predecessor's hash
//! (else one was removed or inserted); sequence numbers have no gaps. Checkpoints and pruning
//! markers must be signed by a trusted key and vouch for the record before them. The head
//! (the last checkpoint, kept outside the store) must still be in the trail: a trail cut short
//! (its tail, and with it the last checkpoints, deleted) no longer reaches it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sign::{signed_message, verify};
use crate::state::AuditRow;
use crate::state::audit::{GENESIS, chain_hash};

/// The last checkpoint a gateway wrote, as kept beside the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    pub body: String,
}

/// Where a trail breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The record at fault (or, for a missing one, the one expected there).
    pub seq: u64,
    pub why: String,
}

/// What a verification found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub checkpoints: u64,
    /// Records after the last checkpoint (written since, or by a gateway still running).
    pub unsealed: u64,
    /// Records removed by signed pruning (the trail starts after them).
    pub pruned_up_to: Option<u64>,
    pub keys: BTreeSet<String>,
    pub problem: Option<Problem>,
}

/// Checks records fed in order.
pub struct Verifier {
    trusted: BTreeSet<String>,
    head: Option<Head>,
    report: Report,
    prev: Option<(u64, String)>,
    /// The first record's predecessor, when the trail does not start at 1: a pruning marker
    /// must vouch for it.
    missing_start: Option<(u64, String)>,
    head_seen: bool,
}

fn text<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

impl Verifier {
    /// Signatures count only from `trusted` keys; `head` is the last checkpoint on record.
    pub fn new(trusted: BTreeSet<String>, head: Option<Head>) -> Self {
        Self {
            trusted,
            head,
            report: Report::default(),
            prev: None,
            missing_start: None,
            head_seen: false,
        }
    }

    fn fail(&mut self, seq: u64, why: String) -> Result<(), Problem> {
        let problem = Problem { seq, why };
        self.report.problem = Some(problem.clone());
        Err(problem)
    }

    /// Checks the next record; the first problem stops the check.
    pub fn push(&mut self, row: &AuditRow) -> Result<(), Problem> {
        let seq = row.seq;
        let Ok(body) = serde_json::from_str::<Value>(&row.body) else {
            return self.fail(seq, "the record's body is not valid JSON (edited)".into());
        };
        if chain_hash(&row.body) != row.hash {
            return self.fail(
                seq,
                "the record's content does not match its hash: it was edited after it was written"
                    .into(),
            );
        }
        if body.get("seq").and_then(Value::as_u64) != Some(seq) {
            let said = body.get("seq").map_or("nothing".into(), Value::to_string);
            return self.fail(
                seq,
                format!(
                    "the record stored as {seq} says it is {said}: records were reordered or replaced"
                ),
            );
        }
        let prev = text(&body, "prev").unwrap_or_default().to_string();
        match &self.prev {
            Some((last, hash)) => {
                if seq != last + 1 {
                    let missing = if seq == last + 2 {
                        format!("record {} is missing", last + 1)
                    } else {
                        format!("records {}–{} are missing", last + 1, seq - 1)
                    };
                    return self.fail(
                        last + 1,
                        format!("{missing}: the trail jumps from {last} to {seq}"),
                    );
                }
                if &prev != hash {
                    return self.fail(
                        seq,
                        format!("the record does not follow record {last} (its hash differs from the one this record chains to): one of them was replaced"),
                    );
                }
            }
            None if seq == 1 => {
                if prev != GENESIS {
                    return self.fail(1, "the first record does not start the chain".into());
                }
            }
            None => self.missing_start = Some((seq - 1, prev.clone())),
        }
        let columns = [
            ("kind", Some(row.kind.as_str())),
            ("job", row.job.as_deref()),
            ("principal", row.principal.as_deref()),
            ("tool", row.tool.as_deref()),
            ("outcome", row.outcome.as_deref()),
        ];
        for (field, column) in columns {
            if text(&body, field) != column {
                return self.fail(
                    seq,
                    format!(
                        "the record's `{field}` column differs from its signed content (edited)"
                    ),
                );
            }
        }
        if body.get("at_ms").and_then(Value::as_u64) != Some(row.at_ms) {
            return self.fail(
                seq,
                "the record's time column differs from its content (edited)".into(),
            );
        }
        match row.kind.as_str() {
            "checkpoint" => self.seal(seq, &body, "covers", "checkpoint")?,
            "pruned" => self.seal(seq, &body, "up_to", "pruned")?,
            _ => self.report.unsealed += 1,
        }
        if let Some(head) = &self.head
            && head.seq == seq
        {
            if head.hash != row.hash {
                let why = "the record differs from the last checkpoint kept beside the store (the head): the trail was rewritten".into();
                return self.fail(seq, why);
            }
            self.head_seen = true;
        }
        self.report.records += 1;
        self.report.first_seq.get_or_insert(seq);
        self.report.last_seq = Some(seq);
        self.prev = Some((seq, row.hash.clone()));
        Ok(())
    }

    /// Checks a checkpoint's or pruning marker's signature and what it vouches for.
    fn seal(&mut self, seq: u64, body: &Value, field: &str, kind: &str) -> Result<(), Problem> {
        let what = body.get(field);
        let (Some(covered), Some(hash), Some(at_ms), Some(key), Some(sig)) = (
            what.and_then(|w| w.get("seq")).and_then(Value::as_u64),
            what.and_then(|w| w.get("hash")).and_then(Value::as_str),
            body.get("at_ms").and_then(Value::as_u64),
            text(body, "key"),
            text(body, "sig"),
        ) else {
            return self.fail(seq, format!("the {kind} record is incomplete"));
        };
        if !self.trusted.contains(key) {
            return self.fail(
                seq,
                format!("the {kind} is signed by {key}, which is not a trusted key"),
            );
        }
        if !verify(key, &signed_message(kind, covered, hash, at_ms), sig) {
            return self.fail(seq, format!("the {kind}'s signature is not valid"));
        }
        self.report.keys.insert(key.to_string());
        if kind == "checkpoint" {
            let follows = self
                .prev
                .as_ref()
                .is_some_and(|(s, h)| *s == covered && h == hash)
                || self
                    .missing_start
                    .as_ref()
                    .is_some_and(|(s, h)| *s == covered && h == hash && self.prev.is_none());
            if !follows {
                return self.fail(
                    seq,
                    "the checkpoint does not seal the record before it".into(),
                );
            }
            self.report.checkpoints += 1;
            self.report.unsealed = 0;
        } else if self
            .missing_start
            .as_ref()
            .is_some_and(|(s, h)| *s == covered && h == hash)
        {
            self.missing_start = None;
            self.report.pruned_up_to = Some(covered);
        }
        Ok(())
    }

    /// The verdict once every record was pushed.
    pub fn finish(mut self) -> Report {
        if self.report.problem.is_some() {
            return self.report;
        }
        if let Some((up_to, _)) = &self.missing_start {
            let why = if *up_to == 1 {
                "record 1 is missing and no signed pruning marker accounts for it".to_string()
            } else {
                format!(
                    "records 1–{up_to} are missing and no signed pruning marker accounts for them"
                )
            };
            self.report.problem = Some(Problem { seq: 1, why });
            return self.report;
        }
        if let Some(head) = &self.head
            && !self.head_seen
        {
            let last = self.report.last_seq.unwrap_or(0);
            let why = if last < head.seq {
                format!(
                    "the trail ends at record {last}, but the last checkpoint (kept beside the store) is record {}: records were deleted from the end",
                    head.seq
                )
            } else {
                format!(
                    "the last checkpoint (record {}) kept beside the store is not in the trail",
                    head.seq
                )
            };
            self.report.problem = Some(Problem { seq: last + 1, why });
        }
        self.report
    }
}

/// Whether a head file's content is a checkpoint signed by a trusted key.
pub fn head_is_signed(head: &Head, trusted: &BTreeSet<String>) -> bool {
    let Ok(body) = serde_json::from_str::<Value>(&head.body) else {
        return false;
    };
    let covers = body.get("covers");
    match (
        covers.and_then(|c| c.get("seq")).and_then(Value::as_u64),
        covers.and_then(|c| c.get("hash")).and_then(Value::as_str),
        body.get("at_ms").and_then(Value::as_u64),
        text(&body, "key"),
        text(&body, "sig"),
    ) {
        (Some(seq), Some(hash), Some(at_ms), Some(key), Some(sig)) => {
            chain_hash(&head.body) == head.hash
                && body.get("seq").and_then(Value::as_u64) == Some(head.seq)
                && trusted.contains(key)
                && verify(key, &signed_message("checkpoint", seq, hash, at_ms), sig)
        }
        _ => false,
    }
}
