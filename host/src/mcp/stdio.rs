//! MCP over stdio. stdout carries the protocol and nothing else (logs go to stderr; guests
//! never see it).
//!
//! A dedicated thread reads stdin line by line, applies the size and depth checks of
//! [`precheck`] before anything parses a line, parses what passes, and hands messages to rmcp.
//! Every outgoing line — rmcp's responses and the refusals written here — goes through one
//! locked writer, whole and flushed.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures::{Sink, Stream};
use rmcp::model::ProtocolVersion;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::{RoleServer, ServiceExt};
use tokio::sync::mpsc;

use super::Handler;
use super::precheck::{self, MessageCaps, Verdict};
use crate::gate::{Gateway, Transport};
use crate::policy::Principal;

/// The one writer of protocol output.
type Output = Arc<Mutex<Box<dyn Write + Send>>>;

fn write_line(output: &Output, line: &[u8]) -> std::io::Result<()> {
    let mut out = output
        .lock()
        .map_err(|_| std::io::Error::other("stdout lock poisoned"))?;
    out.write_all(line)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Serves MCP on this process's stdin/stdout until stdin closes.
pub async fn serve(gateway: Arc<Gateway>, principal: Principal, caps: MessageCaps) -> Result<()> {
    serve_on(
        gateway,
        principal,
        caps,
        std::io::stdin(),
        std::io::stdout(),
    )
    .await
}

/// Serves MCP on any reader/writer pair.
pub async fn serve_on<R, W>(
    gateway: Arc<Gateway>,
    principal: Principal,
    caps: MessageCaps,
    input: R,
    output: W,
) -> Result<()>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let output: Output = Arc::new(Mutex::new(Box::new(output)));
    let (messages, incoming) = mpsc::channel::<RxJsonRpcMessage<RoleServer>>(64);
    let reader_output = output.clone();
    std::thread::Builder::new()
        .name("portcullis-stdin".into())
        .spawn(move || read_input(input, &messages, &reader_output, caps))
        .context("starting the stdin thread")?;

    let principal = Arc::new(principal);
    let handler = Handler::new(gateway.clone(), Some(principal.clone()), Transport::Stdio);
    let watched = handler.watched();
    let service = handler
        .serve((Box::pin(sink(output)), Box::pin(stream(incoming))))
        .await
        .context("starting the MCP session on stdio")?;
    // Clients before 2026-07-28 learn of changes on the session; later ones open a
    // `subscriptions/listen` stream for them.
    let peer = service.peer().clone();
    let legacy = peer
        .peer_info()
        .is_some_and(|info| info.protocol_version < ProtocolVersion::V_2026_07_28);
    let follow = legacy.then(|| {
        tokio::spawn(super::changes::tell(
            gateway,
            principal,
            Transport::Stdio,
            peer,
            watched,
        ))
    });
    let _ = service.waiting().await;
    if let Some(follow) = follow {
        follow.abort();
    }
    Ok(())
}

fn sink(output: Output) -> impl Sink<TxJsonRpcMessage<RoleServer>, Error = std::io::Error> {
    futures::sink::unfold(
        output,
        |output, message: TxJsonRpcMessage<RoleServer>| async move {
            let line = serde_json::to_vec(&message)?;
            write_line(&output, &line)?;
            Ok(output)
        },
    )
}

fn stream(
    incoming: mpsc::Receiver<RxJsonRpcMessage<RoleServer>>,
) -> impl Stream<Item = RxJsonRpcMessage<RoleServer>> {
    futures::stream::unfold(incoming, |mut incoming| async move {
        incoming.recv().await.map(|message| (message, incoming))
    })
}

/// Reads, checks and parses lines until stdin closes or rmcp stops listening.
fn read_input<R: Read>(
    input: R,
    messages: &mpsc::Sender<RxJsonRpcMessage<RoleServer>>,
    output: &Output,
    caps: MessageCaps,
) {
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let limit = caps.max_bytes as u64 + 1;
    loop {
        line.clear();
        let read = match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(n) => n as u64,
            Err(e) => {
                tracing::error!("reading stdin: {e}");
                return;
            }
        };
        let complete = line.ends_with(b"\n");
        if line.iter().all(u8::is_ascii_whitespace) {
            continue; // blank lines between messages, and trailing space at the end
        }
        let verdict = if !complete && read >= limit {
            // Too long: answer from its start, then skip the rest of the line.
            let verdict = precheck::oversized(&line, caps);
            if skip_line(&mut reader).is_err() {
                return;
            }
            verdict
        } else {
            precheck::check(&line, caps)
        };
        let reply = match verdict {
            Verdict::Refuse(reply) => {
                tracing::warn!("refused an incoming message over a cap or with a repeated key");
                reply
            }
            Verdict::Malformed(reply) => {
                tracing::debug!("refused a line that is not one JSON-RPC message");
                Some(reply)
            }
            Verdict::Pass => {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                match serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(text) {
                    Ok(message) => {
                        if messages.blocking_send(message).is_err() {
                            return;
                        }
                        None
                    }
                    Err(e) => {
                        // The parser's message can quote the input: it goes back to the
                        // client, never to the log.
                        tracing::debug!("refused a message that is not JSON-RPC");
                        Some(precheck::invalid(
                            text,
                            &format!("not a valid JSON-RPC message: {e}"),
                        ))
                    }
                }
            }
        };
        if let Some(reply) = reply
            && write_line(output, reply.as_bytes()).is_err()
        {
            return;
        }
    }
}

/// Discards input up to and including the next newline.
fn skip_line<R: Read>(reader: &mut BufReader<R>) -> std::io::Result<()> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        if let Some(at) = buffer.iter().position(|&b| b == b'\n') {
            reader.consume(at + 1);
            return Ok(());
        }
        let n = buffer.len();
        reader.consume(n);
    }
}
