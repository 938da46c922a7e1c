//! The domain at the bottom of the crate: identities and ids, contacts, channels,
//! invitations and their codes, entries, and the closed vocabularies (error kinds, `Via`,
//! invitation states) that `net`, `store`, `app` and `ui` share. Pure: it imports nothing
//! else of the crate and no I/O, runtime or terminal crate (checked by `tests/layers.rs`).

pub mod channel;
pub mod codes;
pub mod contact;
pub mod entry;
pub mod hex;
pub mod identity;
pub mod ids;
pub mod invitation;
pub mod kinds;
pub mod log;
pub mod short_code;
pub mod text;

pub use channel::Channel;
pub use codes::{Card, Code, CodeError, Invite};
pub use contact::{Contact, EndpointNote};
pub use entry::{sign_entry, Body, Entry, Hlc, ViewKey};
pub use identity::{Endpoint, Id, Instance, LocalIdentity, PeerIdentity, Person, Profile};
pub use ids::{ChannelId, IdError, InstanceId, PersonId};
pub use invitation::{InviteRecord, InviteStatus};
pub use kinds::{EndpointSource, EndpointState, ErrorKind, InviteState, Reach, Via};
pub use short_code::{ShortCode, ShortCodeError};
