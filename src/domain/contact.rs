//! Contacts: a Person we trust, how it was made, and what we know of reaching it.

use serde::{Deserialize, Serialize};

use crate::domain::identity::{Endpoint, Instance, Person, Profile};
use crate::domain::Via;

/// A contact: a Person we trust, with what we know of how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The Person object (its id is derived from it).
    pub person: Person,
    /// Known instances of that Person.
    #[serde(default)]
    pub instances: Vec<Instance>,
    /// Known endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The newest verified Profile received from this contact.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// This contact stores and forwards our channels (our home node).
    #[serde(default)]
    pub replica: bool,
    /// We store and forward this contact's channels (we are its home node).
    #[serde(default)]
    pub replica_for: bool,
    /// How the contact was made.
    pub via: Via,
    /// Unix seconds when added.
    pub added_at: u64,
}

impl Contact {
    /// The contact's Person id.
    pub fn person_id(&self) -> crate::domain::PersonId {
        self.person.id()
    }
}
