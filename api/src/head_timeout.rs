//! The time a client has to send its first request's head, answered like every other error: a
//! connection whose head (up to the blank line) has not arrived within [`HEAD_TIMEOUT`] gets a
//! 408 problem+json and is closed. actix-http's own head timer writes a 408 with no body; it is
//! set a second later than this one, so it never fires first.
//!
//! [`HeadTimeout`] wraps a connection's stream: it passes bytes through while it looks for the
//! end of the first head, and once that is seen it only passes bytes through. Later requests on
//! a kept-alive connection are bounded by actix's keep-alive timer and the body timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a new connection may take to send its first request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The end of an HTTP/1 head.
const HEAD_END: &[u8] = b"\r\n\r\n";

/// A connection's stream, answering 408 when its first head is late.
pub struct HeadTimeout<S> {
    inner: S,
    state: State,
}

enum State {
    /// Waiting for the first head; `seen` counts the bytes of [`HEAD_END`] matched so far.
    Waiting {
        deadline: Pin<Box<tokio::time::Sleep>>,
        seen: usize,
    },
    /// The head is in (or the connection was answered): bytes pass through.
    Passing,
    /// Writing the 408, from this offset; then the stream ends.
    Answering(usize),
    Closed,
}

impl<S> HeadTimeout<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            state: State::Waiting {
                deadline: Box::pin(tokio::time::sleep(timeout)),
                seen: 0,
            },
        }
    }
}

/// The whole 408 response: a problem+json body like every other error's.
fn response() -> &'static [u8] {
    static RESPONSE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    RESPONSE.get_or_init(|| {
        let body = serde_json::json!({
            "type": "urn:hookbeat:problem:request-timeout",
            "title": "Request Timeout",
            "status": 408,
            "detail": format!(
                "the request's head did not arrive within {} s",
                HEAD_TIMEOUT.as_secs()
            ),
        })
        .to_string();
        format!(
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: {}\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            crate::error::PROBLEM_JSON,
            body.len()
        )
        .into_bytes()
    })
}

/// How many bytes of [`HEAD_END`] are matched after `bytes`, given `seen` before them; `None`
/// once the whole of it was.
fn scan(mut seen: usize, bytes: &[u8]) -> Option<usize> {
    for byte in bytes {
        seen = if *byte == HEAD_END[seen] {
            seen + 1
        } else if *byte == HEAD_END[0] {
            1
        } else {
            0
        };
        if seen == HEAD_END.len() {
            return None;
        }
    }
    Some(seen)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Passing => return Pin::new(&mut this.inner).poll_read(cx, buf),
                State::Closed => return Poll::Ready(Ok(())),
                State::Answering(written) => {
                    let rest = &response()[*written..];
                    if rest.is_empty() {
                        let _ = Pin::new(&mut this.inner).poll_shutdown(cx);
                        this.state = State::Closed;
                        continue;
                    }
                    match Pin::new(&mut this.inner).poll_write(cx, rest) {
                        Poll::Ready(Ok(n)) if n > 0 => *written += n,
                        Poll::Ready(_) => this.state = State::Closed,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                State::Waiting { deadline, seen } => {
                    let before = buf.filled().len();
                    match Pin::new(&mut this.inner).poll_read(cx, buf) {
                        Poll::Ready(Ok(())) => {
                            match scan(*seen, &buf.filled()[before..]) {
                                Some(matched) => *seen = matched,
                                None => this.state = State::Passing,
                            }
                            return Poll::Ready(Ok(()));
                        }
                        Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                        Poll::Pending => {}
                    }
                    if deadline.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    tracing::info!("a client's request head was late; answered 408");
                    this.state = State::Answering(0);
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_a_head_across_reads() {
        assert_eq!(scan(0, b"GET / HTTP/1.1\r\nhost: x\r\n"), Some(2));
        assert_eq!(scan(2, b"\r\n"), None);
        assert_eq!(scan(0, b"\r\n\r"), Some(3));
        assert_eq!(scan(3, b"x"), Some(0));
        assert_eq!(scan(1, b"\r\n\r\n"), None);
    }

    #[test]
    fn the_answer_is_a_complete_problem() {
        let text = String::from_utf8(response().to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 408);
    }
}
