//! lama-tui: a terminal peer-to-peer chat whose instances pair, find each other and sync.
//!
//! Map of the crate (pure core first, I/O shell around it):
//! - [`identity`]: Person and Instance objects, their canonical encoding and ids, key material.
//! - [`net`]: the wire protocol. `wire` (messages and limits) and `handshake` (Noise XX plus
//!   the identity proof) are pure; `conn` is the tokio/WebSocket shell that drives them.
//! - [`store`]: persistence. `Store` is the typed API over sled; `keyfile` keeps the secret
//!   keys at rest (mode 0600, optionally sealed with a passphrase).
//! - [`app`]: roles and wiring. `cli` (flags), `headless` (the JSON-lines control protocol,
//!   pure parsing), `runtime` (the actor that owns an instance's state), `logging`.
//! - [`ui`]: the ratatui interface, a function of the runtime's state.
#![forbid(unsafe_code)]

pub mod app;
pub mod identity;
pub mod net;
pub mod store;
pub mod ui;
