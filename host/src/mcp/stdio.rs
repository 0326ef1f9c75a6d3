//! MCP over stdio. stdout carries the protocol and nothing else (logs go to stderr, guests
//! never see it). Every incoming line passes the size and depth checks of [`precheck`] before
//! rmcp parses it; outgoing lines are written whole by one writer.

use std::sync::Arc;

use anyhow::{Context, Result};
use rmcp::ServiceExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::Handler;
use super::precheck::{self, MessageCaps, Verdict};
use crate::gate::{Gateway, Transport};
use crate::policy::Principal;

/// Serves MCP on this process's stdin/stdout until stdin closes.
pub async fn serve(gateway: Arc<Gateway>, principal: Principal, caps: MessageCaps) -> Result<()> {
    serve_on(
        gateway,
        principal,
        caps,
        tokio::io::stdin(),
        tokio::io::stdout(),
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
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (rmcp_side, our_side) = tokio::io::duplex(256 * 1024);
    let (from_rmcp, to_rmcp) = tokio::io::split(our_side);
    let (lines, line_rx) = mpsc::channel::<Vec<u8>>(64);

    let writer = tokio::spawn(write_lines(line_rx, output));
    let relay = tokio::spawn(relay_lines(from_rmcp, lines.clone()));
    let pump = tokio::spawn(pump_input(input, to_rmcp, lines, caps));

    let handler = Handler::new(gateway, Some(Arc::new(principal)), Transport::Stdio);
    let service = handler
        .serve(rmcp_side)
        .await
        .context("starting the MCP session on stdio")?;
    let _ = service.waiting().await;
    pump.abort();
    let _ = relay.await;
    let _ = writer.await;
    Ok(())
}

/// Reads lines from the client, refusing those over the caps and passing the rest to rmcp.
async fn pump_input<R, W>(
    input: R,
    mut to_rmcp: W,
    replies: mpsc::Sender<Vec<u8>>,
    caps: MessageCaps,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = caps.max_bytes as u64 + 1;
        let read = match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::error!("reading stdin: {e}");
                break;
            }
        };
        let complete = line.ends_with(b"\n");
        let verdict = if !complete && read as u64 >= limit {
            // Too long: answer from its start, then skip the rest of the line.
            let verdict = precheck::oversized(&line, caps);
            if skip_line(&mut reader).await.is_err() {
                break;
            }
            verdict
        } else {
            precheck::check(&line, caps)
        };
        match verdict {
            Verdict::Pass => {
                if !complete {
                    line.push(b'\n');
                }
                if to_rmcp.write_all(&line).await.is_err() {
                    break;
                }
            }
            Verdict::Refuse(reply) => {
                tracing::warn!("refused an incoming message over the size or depth cap");
                if let Some(reply) = reply
                    && replies.send(reply.into_bytes()).await.is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = to_rmcp.shutdown().await;
}

/// Discards input up to and including the next newline.
async fn skip_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> std::io::Result<()> {
    loop {
        let buffer = reader.fill_buf().await?;
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

/// Copies rmcp's output, line by line, to the writer.
async fn relay_lines<R: AsyncRead + Unpin>(from_rmcp: R, lines: mpsc::Sender<Vec<u8>>) {
    let mut reader = BufReader::new(from_rmcp);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if line.ends_with(b"\n") {
                    line.pop();
                }
                if lines.send(line).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// The only writer of the output: whole lines, flushed.
async fn write_lines<W: AsyncWrite + Unpin>(mut lines: mpsc::Receiver<Vec<u8>>, mut output: W) {
    while let Some(mut line) = lines.recv().await {
        line.push(b'\n');
        if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
            break;
        }
    }
}
