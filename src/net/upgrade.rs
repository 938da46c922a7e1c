//! The WebSocket upgrade, carrying Noise message 1 in a request header (docs/PROTOCOL.md,
//! section 3) so that message 2 comes back right behind the 101: one round trip less per
//! connection than a first frame would cost.

use data_encoding::BASE64URL_NOPAD;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::handshake::server::Response;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::WebSocketStream;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::net::link::ConnError;
use crate::net::wire::MAX_FRAME;

/// WebSocket limits: one Noise message per WebSocket message.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_frame_size(Some(MAX_FRAME))
        .max_message_size(Some(MAX_FRAME))
}

/// The upgrade request header carrying Noise message 1 (base64url, no padding), and the
/// value a responder answers in the same header when it took the message from there.
pub const NOISE1_HEADER: &str = "lama-noise-1";
/// See [`NOISE1_HEADER`].
pub const NOISE1_TAKEN: &str = "taken";
/// Longest header value taken: message 1 is 32 bytes, 43 characters encoded; a bigger one
/// is left alone (the responder then waits for message 1 as a frame).
const NOISE1_MAX_CHARS: usize = 64;

/// The upgrade request for `url`, with Noise message 1 in [`NOISE1_HEADER`].
pub(crate) fn upgrade_request(url: &str, m1: &[u8]) -> Result<Request, ConnError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnError::Unreachable {
            url: url.into(),
            why: e.to_string(),
        })?;
    let value = HeaderValue::from_str(&BASE64URL_NOPAD.encode(m1))
        .expect("base64url is a valid header value");
    request.headers_mut().insert(NOISE1_HEADER, value);
    Ok(request)
}

/// Accept a WebSocket upgrade on `stream`, taking Noise message 1 from the request when it
/// carries one; pass the result to [`crate::net::conn::respond_with`].
pub async fn accept_upgrade<S>(
    stream: S,
) -> Result<(WebSocketStream<S>, Option<Vec<u8>>), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut m1 = None;
    // The error type is tungstenite's `Callback` signature, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let take = |req: &Request, mut resp: Response| {
        let value = req.headers().get(NOISE1_HEADER).map(|v| v.as_bytes());
        if let Some(b) = value.filter(|v| v.len() <= NOISE1_MAX_CHARS) {
            if let Ok(m) = BASE64URL_NOPAD.decode(b) {
                m1 = Some(m);
                resp.headers_mut()
                    .insert(NOISE1_HEADER, HeaderValue::from_static(NOISE1_TAKEN));
            }
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, take, Some(ws_config()))
        .await
        .map_err(|e| ConnError::Ws(e.to_string()))?;
    Ok((ws, m1))
}
