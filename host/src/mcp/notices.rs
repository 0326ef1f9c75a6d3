//! A call's progress and log notices, delivered to the client that made the request: as
//! `notifications/progress` when the request carried a progress token, and as
//! `notifications/message` at or above the level the client asked for (the request's
//! `io.modelcontextprotocol/logLevel`, or `logging/setLevel` on a session). Over streamable
//! HTTP they travel on the request's own response stream (rmcp switches that response to SSE).
//!
//! Notices are queued by the running guest (never blocking it) and sent in order by one task,
//! which the handler waits for before it answers: every notice precedes the result.

#![allow(deprecated)] // MCP logging is deprecated by SEP-2577 but still part of 2026-07-28.

use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
};
use rmcp::{Peer, RoleServer};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::runner::{Notice, Notify};

/// Severity rank, lowest first, as MCP orders levels.
pub fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// A guest log level in MCP's terms.
fn mcp_level(level: &str) -> LoggingLevel {
    match level {
        "trace" | "debug" => LoggingLevel::Debug,
        "info" => LoggingLevel::Info,
        "warn" => LoggingLevel::Warning,
        _ => LoggingLevel::Error,
    }
}

/// The delivery of one call's notices.
pub struct Delivery {
    pub notify: Notify,
    task: JoinHandle<()>,
}

impl Delivery {
    /// Starts delivery, if the client asked for progress or logs at all.
    pub fn start(
        peer: Peer<RoleServer>,
        progress: Option<ProgressToken>,
        level: Option<LoggingLevel>,
    ) -> Option<Self> {
        if progress.is_none() && level.is_none() {
            return None;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Notice>();
        let task = tokio::spawn(async move {
            while let Some(notice) = rx.recv().await {
                // A client that went away just stops receiving.
                let _ = match notice {
                    Notice::Progress {
                        done,
                        total,
                        message,
                    } => {
                        let Some(token) = &progress else { continue };
                        let mut param = ProgressNotificationParam::new(token.clone(), done as f64);
                        param.total = total.map(|t| t as f64);
                        param.message = message;
                        peer.notify_progress(param).await
                    }
                    Notice::Log { level, message } => {
                        let level = mcp_level(level);
                        peer.notify_logging_message(
                            LoggingMessageNotificationParam::new(level, json!(message))
                                .with_logger("tool"),
                        )
                        .await
                    }
                };
            }
        });
        let min = level.map(rank);
        let notify = Notify::notices(move |notice: Notice| {
            let wanted = match &notice {
                Notice::Progress { .. } => true,
                Notice::Log { level, .. } => min.is_some_and(|m| rank(mcp_level(level)) >= m),
            };
            if wanted {
                let _ = tx.send(notice);
            }
        });
        Some(Self { notify, task })
    }

    /// Waits until every queued notice is sent (the call has ended, so no more come).
    pub async fn finish(self) {
        drop(self.notify);
        let _ = self.task.await;
    }
}
