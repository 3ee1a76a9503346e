//! AMQP over WebSocket (the OASIS AMQP WebSocket binding, RFC 6455): the HTTP upgrade, and a
//! byte stream over the WebSocket's binary messages so the AMQP connection above cannot tell
//! it from a socket. AMQP frames and WebSocket messages need not line up: a frame may span
//! messages and a message may carry several frames, as the binding allows.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig as Limits;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::config::WebSocketConfig;

/// The subprotocols a client may ask for, in the order the broker prefers them: `amqp` (the
/// OASIS binding), `AMQPWSB10` (its draft name, which the Azure SDKs and rhea still offer).
const SUBPROTOCOLS: &[&str] = &["amqp", "AMQPWSB10"];

/// A WebSocket carrying AMQP, read and written as a byte stream.
#[derive(Debug)]
pub struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// What is left of the last binary message read.
    read: Bytes,
}

impl<S> WsStream<S> {
    /// Wraps an open WebSocket (the server's after [`upgrade`], or a client's).
    pub fn new(inner: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            inner,
            read: Bytes::new(),
        }
    }
}

/// Answers the client's HTTP upgrade request on `stream`: the path must be `config.path`, a
/// browser's `Origin` must be one `config.origins` lets in, and `amqp` is chosen among the
/// subprotocols offered.
pub async fn upgrade<S>(
    stream: S,
    config: &WebSocketConfig,
    max_frame: u32,
) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    #[allow(clippy::result_large_err)] // tungstenite's callback signature
    let check = |request: &Request, response: Response| check_request(config, request, response);
    // A message never needs to be much larger than the largest AMQP frame the broker accepts;
    // beyond that a peer is only trying to make it buffer.
    let max = (max_frame as usize).max(64 * 1024) * 2;
    let mut limits = Limits::default();
    limits.max_message_size = Some(max);
    limits.max_frame_size = Some(max);
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(limits)).await?;
    Ok(WsStream::new(ws))
}

// The signature is tungstenite's callback's, whose refusal is a whole HTTP response.
#[allow(clippy::result_large_err)]
fn check_request(
    config: &WebSocketConfig,
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    let refuse = |status: StatusCode, why: String| -> ErrorResponse {
        let mut refusal = ErrorResponse::new(Some(why));
        *refusal.status_mut() = status;
        refusal
    };
    if request.uri().path() != config.path {
        let why = format!("AMQP over WebSocket is served at {}", config.path);
        return Err(refuse(StatusCode::NOT_FOUND, why));
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !config.allows_origin(origin) {
            let why = format!("origin {origin:?} is not in [websocket] origins");
            return Err(refuse(StatusCode::FORBIDDEN, why));
        }
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // A client that names no subprotocol gets AMQP anyway (there is nothing else here); one
    // that names only others is told which this endpoint speaks.
    if !offered.is_empty() {
        let Some(chosen) = SUBPROTOCOLS.iter().find(|p| offered.contains(p)) else {
            let why = format!(
                "this endpoint speaks the WebSocket subprotocol \"amqp\"; offered: {}",
                offered.join(", ")
            );
            return Err(refuse(StatusCode::BAD_REQUEST, why));
        };
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(chosen),
        );
    }
    Ok(response)
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.read.is_empty() {
                let n = buf.remaining().min(self.read.len());
                buf.put_slice(&self.read[..n]);
                self.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            let next = ready!(Pin::new(&mut self.inner).poll_next(cx));
            match next {
                // End of stream: the peer closed the WebSocket (or the socket under it).
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => self.read = data,
                Some(Ok(Message::Text(_))) => {
                    let why = "a text WebSocket message: AMQP travels in binary messages";
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
                }
                // Pings are answered by tungstenite itself; pongs need nothing.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Sends `data` as one binary message. The message is handed to the socket at once as far
    /// as it takes it (a write that had to wait in tungstenite's buffer for the next one could
    /// wait forever: the handshake writes, then reads); what the socket does not take leaves
    /// with the next write, read or flush.
    fn send(&mut self, cx: &mut Context<'_>, data: Bytes) -> Poll<io::Result<()>> {
        let mut sink = Pin::new(&mut self.inner);
        ready!(sink.as_mut().poll_ready(cx)).map_err(to_io)?;
        sink.as_mut()
            .start_send(Message::Binary(data))
            .map_err(to_io)?;
        match sink.poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(to_io(e))),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.send(cx, Bytes::copy_from_slice(buf)))?;
        Poll::Ready(Ok(buf.len()))
    }

    /// All the slices in one message: the connection writes a batch of frames at a time, and
    /// a message per frame would cost a WebSocket header and a socket write each.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut data = Vec::with_capacity(total);
        for b in bufs {
            data.extend_from_slice(b);
        }
        ready!(self.send(cx, Bytes::from(data)))?;
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.inner).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}
