//! The wire protocol: message encoding and limits (`wire`), the Noise XX handshake with the
//! identity proof (`handshake`), both pure, and the WebSocket connection shell (`conn`).

pub mod conn;
pub mod discovery;
pub mod frames;
pub mod handshake;
pub mod link;
pub mod live;
pub mod manager;
pub mod pairing;
pub mod pake;
pub mod sync;
pub mod tls;
pub mod upgrade;
pub mod wire;
