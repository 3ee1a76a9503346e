//! Ending a connection the broker will not serve once the protocol header is exchanged: our
//! `open` (AMQP 2.4.3: a `close` must follow an `open`) and a `close` with
//! `amqp:resource-limit-exceeded` and the reason, so the client reports why rather than a
//! bare disconnect.

use std::time::Duration;

use fe2o3_amqp_types::definitions::{AmqpError, Error};
use fe2o3_amqp_types::performatives::{ChannelMax, Close, MaxFrameSize, Open, Performative};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::frame::Output;

/// How long the peer gets to read our close before the socket is dropped.
const GRACE: Duration = Duration::from_secs(2);

/// Appends our `open` and a `close` carrying `description` to `out`.
pub fn push_refusal(out: &mut Output, container_id: &str, description: String) {
    let open = Open {
        container_id: container_id.to_owned(),
        hostname: None,
        max_frame_size: MaxFrameSize::default(),
        channel_max: ChannelMax(0),
        idle_time_out: None,
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    out.push_frame(0, &Performative::Open(open), &[]);
    let error = Error::new(AmqpError::ResourceLimitExceeded, Some(description), None);
    let close = Close { error: Some(error) };
    out.push_frame(0, &Performative::Close(close), &[]);
}

/// Writes our `open` and `close` and ends the socket. What the peer sends meanwhile is read
/// and dropped until it closes too (for at most a short grace), so that unread input does not
/// make the kernel reset the socket before the peer has read our close.
pub async fn refuse<R, W>(rd: &mut R, wr: &mut W, container_id: &str, description: String)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = Output::default();
    push_refusal(&mut out, container_id, description);
    let bytes = out.take_all();
    let _ = tokio::time::timeout(GRACE, async {
        wr.write_all(&bytes).await?;
        wr.shutdown().await?;
        let mut sink = [0u8; 4096];
        while rd.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}
