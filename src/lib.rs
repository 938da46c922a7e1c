//! lama-tui: a terminal peer-to-peer chat whose instances pair, find each other and sync.
//!
//! Map of the crate (pure core first, I/O shell around it):
//! - [`domain`]: at the bottom, importing nothing else of the crate: identities (Person,
//!   Instance, Profile, ids, key material), contacts, channels, invitations and their codes,
//!   entries and the HLC, and the closed vocabularies (error kinds, `Via`, invite states).
//! - [`net`]: the wire protocol. Pure: `wire` (messages, limits), `handshake` (Noise XX and
//!   the identity proof), `invite` (codes, QR), `pairing`, `pake` (short codes and the trust
//!   secret: SPAKE2 bound to the Noise session), `manager` (dial schedule, duplicate
//!   rule), `discovery` (announcement rules), `sync` (CHUM logs, checks, sessions). Shell:
//!   `conn` (tokio/WebSocket) and the UDP tasks in `discovery`.
//! - [`store`]: persistence. `Store` is the typed API over sled, `log` its sync log
//!   implementation; `keyfile` keeps the secret keys at rest (0600, optionally sealed).
//! - [`app`]: roles and wiring. `cli` (flags), `headless` (the JSON-lines control protocol,
//!   pure parsing), `runtime` (types and the handle), `actor` (the task that owns an
//!   instance's state), `tasks` (connection tasks), `provision` (local trust), `logging`.
//! - `fuzzing` (feature `fuzzing`): untrusted bytes into every decoder, shared by `fuzz/` and `tests/props.rs`.
//! - `bench` (feature `bench`): benchmarks against the raw limits of the same machine (`lama-bench`).
//! - [`ui`]: the ratatui interface: `state` (update: actions in, effects out) and `view`
//!   (render) are pure; the module root is the terminal shell.
#![forbid(unsafe_code)]

pub mod app;
#[cfg(feature = "bench")]
pub mod bench;
pub mod core;
pub mod domain;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod net;
pub mod store;
pub mod ui;
