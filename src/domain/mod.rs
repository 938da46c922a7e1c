//! The domain at the bottom of the crate: the vocabularies (error kinds, how a contact was
//! made, invitation states) that `net`, `store`, `app` and `ui` share. It depends on nothing
//! else in the crate and on no I/O, runtime or terminal crate (checked by `tests/layers.rs`).

pub mod kinds;

pub use kinds::{ErrorKind, InviteState, Via};
