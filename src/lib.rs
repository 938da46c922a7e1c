//! lama-tui: a terminal peer-to-peer chat whose instances pair, find each other and sync.
//!
//! Map of the crate, bottom up (`tests/layers.rs` checks the directions and that no modules
//! import each other in a circle):
//! - [`domain`]: imports nothing else of the crate and no I/O: identities (Person,
//!   Instance, Profile, keys), the id types `PersonId`, `InstanceId`, `ChannelId` that
//!   validate when parsed, contacts, channels, invitations with their codes and
//!   short codes, entries and the HLC, the sync storage port (`log::Log`), and the closed
//!   vocabularies (`ErrorKind`, `Via`, `InviteState`).
//! - [`net`]: the wire protocol over the domain. Pure: `wire` (messages, limits),
//!   `handshake` (Noise XX and the identity proof), `link` (connection errors and timing),
//!   `pairing` (admission rules, and in `pairing::flow` both sides of every pairing
//!   exchange as step machines), `pake` (SPAKE2 bound to the Noise session), `manager`
//!   (dial schedule, duplicate rule), `discovery` (announcement rules), `sync` (CHUM: rules,
//!   sessions, receive, fill). Shell: `conn` (WebSocket framing, one link's loop) and the
//!   UDP tasks in `discovery`.
//! - [`store`]: persistence over the domain: the redb store (and the upgrade from sled) and the key file.
//! - [`core`]: the sans-IO node core: `NodeCore::handle(input, now, rng) -> outputs` with
//!   `poll_timeout`, over the `CoreStore` trait (an in-memory one in `core::mem`). Every
//!   decision: authorisation, pairing and its commits, links, sync dispatch, endpoints,
//!   the full disk, and the network view (`netview`).
//! - [`app`]: the shells and wiring. `runtime` (start, the `Handle`), `actor` (the core's
//!   thin shell: one `select!`), `connections` (where connections happen), `store_adapter`
//!   (redb as the core's store), `control` (the headless protocol as types) and `headless`
//!   (its stdin/stdout shell), `provision` (local trust), `cli`, `clock`, `scan` (codes
//!   from QR pictures), `logging`.
//! - [`ui`]: the ratatui interface, talking to `app` only: `state` (the model), `update`
//!   (its only mutation) with `keys` and `editor` (input), `view`, `popups` and `netview`
//!   (render) are pure; the module root is the terminal shell.
//! - `bench` (feature `bench`, the `lama-bench` binary) and `fuzzing` (feature `fuzzing`,
//!   shared by `fuzz/` and `tests/props.rs`) are not part of the installed library.
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
