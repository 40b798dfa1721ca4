//! WASI stdout and stderr of a plugin, turned into log lines.
//!
//! Bytes are cut into lines; a line longer than [`MAX_LINE`] is cut there,
//! so a plugin that never writes a newline cannot make the worker buffer
//! without bound. Lines go to the [`HostBackend`] as they complete; what is
//! left is flushed after each invocation.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prx_ipc::LogLevel;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use super::HostBackend;

/// Longest log line kept whole; longer output is split.
const MAX_LINE: usize = 8 << 10;

/// One of the guest's output streams.
#[derive(Clone)]
pub struct GuestOutput {
    level: LogLevel,
    pending: Arc<Mutex<Vec<u8>>>,
    backend: Arc<dyn HostBackend>,
}

impl GuestOutput {
    pub fn new(level: LogLevel, backend: Arc<dyn HostBackend>) -> Self {
        Self {
            level,
            pending: Arc::default(),
            backend,
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for &b in bytes {
            if b == b'\n' {
                self.emit(&mut pending);
            } else {
                pending.push(b);
                if pending.len() >= MAX_LINE {
                    self.emit(&mut pending);
                }
            }
        }
    }

    fn emit(&self, pending: &mut Vec<u8>) {
        let line = String::from_utf8_lossy(pending)
            .trim_end_matches('\r')
            .to_owned();
        pending.clear();
        self.backend.log(self.level, line);
    }

    /// Sends a partial last line, if any.
    pub fn flush_pending(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() {
            self.emit(&mut pending);
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_LINE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
