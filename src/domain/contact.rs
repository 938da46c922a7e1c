//! Contacts: a Person we trust, how it was made, and what we know of reaching it.

use serde::{Deserialize, Serialize};

use crate::domain::identity::{Endpoint, Instance, Person, Profile};
use crate::domain::{EndpointSource, Via};

/// Stale addresses kept per contact (the newest; older ones are forgotten).
pub const MAX_STALE_NOTES: usize = 4;

/// What we noted about one address of a contact: where it came from, when, and whether a
/// newer address replaced it. Local knowledge, never sent or signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointNote {
    /// The URL.
    pub url: String,
    /// Where we learned it.
    pub source: EndpointSource,
    /// Unix seconds when we learned it.
    pub learned_at: u64,
    /// Unix seconds since when it is no longer among the contact's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_since: Option<u64>,
}

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
    /// On a home node: the persons whose home node this is that listed this contact as
    /// theirs (a `vouch`); a contact made only so (`via` `vouched`) goes when none does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vouched_by: Vec<crate::domain::identity::Id>,
    /// Where each endpoint came from, and the stale ones (absent in stores written
    /// before 0.2: [`Contact::endpoint_notes`] then falls back on `via` and `added_at`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoint_notes: Vec<EndpointNote>,
}

impl Contact {
    /// The contact's Person id.
    pub fn person_id(&self) -> crate::domain::PersonId {
        self.person.id()
    }

    /// Replace the endpoints with ones learned from `source` at `now` (unix seconds),
    /// noting what changed (see [`Contact::note_endpoints`]).
    pub fn set_endpoints(&mut self, endpoints: Vec<Endpoint>, source: EndpointSource, now: u64) {
        // A contact from an older store has no notes yet: note its endpoints as they were
        // first, so an address that moves away keeps where it came from.
        if self.endpoint_notes.is_empty() {
            self.endpoint_notes = self.fallback_notes();
        }
        self.endpoints = endpoints;
        self.note_endpoints(source, now);
    }

    /// Note that the endpoints were just set from `source` at `now` (unix seconds): an
    /// address new (or back) is noted with this source; one no longer listed turns
    /// stale, and only the newest [`MAX_STALE_NOTES`] stale ones are kept. For a contact
    /// being made; a stored one changes through [`Contact::set_endpoints`].
    pub fn note_endpoints(&mut self, source: EndpointSource, now: u64) {
        let current: Vec<String> = self.endpoints.iter().map(|e| e.url.clone()).collect();
        for n in &mut self.endpoint_notes {
            let listed = current.contains(&n.url);
            if !listed && n.stale_since.is_none() {
                n.stale_since = Some(now);
            } else if listed && n.stale_since.is_some() {
                *n = EndpointNote {
                    url: n.url.clone(),
                    source,
                    learned_at: now,
                    stale_since: None,
                };
            }
        }
        for url in current {
            if !self.endpoint_notes.iter().any(|n| n.url == url) {
                self.endpoint_notes.push(EndpointNote {
                    url,
                    source,
                    learned_at: now,
                    stale_since: None,
                });
            }
        }
        let mut stale: Vec<u64> = self
            .endpoint_notes
            .iter()
            .filter_map(|n| n.stale_since)
            .collect();
        if stale.len() > MAX_STALE_NOTES {
            stale.sort_unstable_by(|a, b| b.cmp(a));
            let oldest_kept = stale[MAX_STALE_NOTES - 1];
            let mut keep = MAX_STALE_NOTES;
            self.endpoint_notes.retain(|n| match n.stale_since {
                Some(t) if t >= oldest_kept && keep > 0 => {
                    keep -= 1;
                    true
                }
                Some(_) => false,
                None => true,
            });
        }
    }

    /// A note for every current endpoint, in the endpoints' order, then the stale ones,
    /// newest first.
    pub fn endpoint_notes(&self) -> Vec<EndpointNote> {
        let fallback = self.fallback_notes();
        let mut out: Vec<EndpointNote> = self
            .endpoints
            .iter()
            .map(|e| {
                self.endpoint_notes
                    .iter()
                    .chain(fallback.iter())
                    .find(|n| n.url == e.url && n.stale_since.is_none())
                    .cloned()
                    .expect("invariant: the fallback notes every current endpoint")
            })
            .collect();
        let mut stale: Vec<EndpointNote> = self
            .endpoint_notes
            .iter()
            .filter(|n| n.stale_since.is_some() && !out.iter().any(|o| o.url == n.url))
            .cloned()
            .collect();
        stale.sort_by_key(|n| std::cmp::Reverse(n.stale_since));
        out.extend(stale);
        out
    }

    /// Notes for contacts stored before notes existed: learned when the contact was made,
    /// the way it was made.
    fn fallback_notes(&self) -> Vec<EndpointNote> {
        let source = source_of(self.via);
        self.endpoints
            .iter()
            .map(|e| EndpointNote {
                url: e.url.clone(),
                source,
                learned_at: self.added_at,
                stale_since: None,
            })
            .collect()
    }
}

/// The source that names how a contact made by `via` gave us its first endpoints.
pub fn source_of(via: Via) -> EndpointSource {
    match via {
        Via::Invite => EndpointSource::Invitation,
        Via::Card | Via::Manual => EndpointSource::Card,
        Via::Vouched => EndpointSource::Profile,
        Via::Provision => EndpointSource::Provisioning,
        Via::ShortCode | Via::TrustSecret => EndpointSource::Pairing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(urls: &[&str]) -> Contact {
        Contact {
            person: crate::domain::Person {
                kind: "Person".into(),
                name: "n@lama.local".into(),
                sign_key: String::new(),
            },
            instances: vec![],
            endpoints: urls.iter().map(|u| endpoint(u)).collect(),
            profile: None,
            replica: false,
            replica_for: false,
            via: Via::Invite,
            added_at: 10,
            endpoint_notes: vec![],
            vouched_by: vec![],
        }
    }

    fn endpoint(url: &str) -> Endpoint {
        Endpoint {
            person_id: "p".into(),
            instance_id: "i".into(),
            url: url.into(),
            transport_key: "k".into(),
        }
    }

    #[test]
    fn a_moved_address_turns_stale_and_the_new_one_names_its_source() {
        let mut c = contact(&["ws://a:1"]);
        // An older store: no notes, the fallback names the invitation.
        assert_eq!(c.endpoint_notes()[0].source, EndpointSource::Invitation);
        c.set_endpoints(vec![endpoint("ws://a:2")], EndpointSource::Discovery, 50);
        let n = c.endpoint_notes();
        assert_eq!(n.len(), 2);
        assert_eq!(
            (
                n[0].url.as_str(),
                n[0].source,
                n[0].learned_at,
                n[0].stale_since
            ),
            ("ws://a:2", EndpointSource::Discovery, 50, None)
        );
        assert_eq!(
            (
                n[1].url.as_str(),
                n[1].source,
                n[1].learned_at,
                n[1].stale_since
            ),
            ("ws://a:1", EndpointSource::Invitation, 10, Some(50))
        );
        // Back at the old address: fresh again, from the new source.
        c.set_endpoints(vec![endpoint("ws://a:1")], EndpointSource::Profile, 60);
        let n = c.endpoint_notes();
        assert_eq!(
            (n[0].source, n[0].stale_since),
            (EndpointSource::Profile, None)
        );
        assert_eq!(
            (n[1].url.as_str(), n[1].stale_since),
            ("ws://a:2", Some(60))
        );
    }

    #[test]
    fn only_the_newest_stale_addresses_are_kept() {
        let mut c = contact(&[]);
        for port in 0..10u64 {
            let e = vec![endpoint(&format!("ws://a:{port}"))];
            c.set_endpoints(e, EndpointSource::Discovery, 100 + port);
        }
        let n = c.endpoint_notes();
        assert_eq!(n.len(), 1 + MAX_STALE_NOTES);
        assert_eq!(n[0].url, "ws://a:9");
        assert_eq!(n[1].url, "ws://a:8");
        assert_eq!(n[MAX_STALE_NOTES].url, "ws://a:5");
    }
}
