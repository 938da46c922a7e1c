//! The `endpoints` answer, field for field (docs/HEADLESS.md): where this instance can be
//! reached, and every address of every contact with its source and state.

use serde::Serialize;

use crate::core::{ContactNet, EndpointView, NetView, SelfNet};
use crate::domain::{EndpointSource, EndpointState, Reach};

/// `self` in `endpoints`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SelfJson {
    /// `node` or `client`.
    pub role: &'static str,
    /// The socket address a node listens on; `null` for a client.
    pub listening: Option<String>,
    /// The URLs it gives out, each with who can use it.
    pub urls: Vec<UrlJson>,
    /// Our home node, if we have one.
    pub home_node: Option<HomeNodeJson>,
    /// `local`, `lan` or `off`.
    pub discovery: &'static str,
}

/// A URL we give out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UrlJson {
    /// The URL.
    pub url: String,
    /// `this_machine`, `local_network` or `network`.
    pub reach: Reach,
}

/// Our home node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HomeNodeJson {
    /// Its person id.
    pub person_id: String,
    /// Its name.
    pub name: String,
}

/// One contact in `endpoints`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContactNetJson {
    /// Person id.
    pub person_id: String,
    /// Name.
    pub name: String,
    /// `connected`, `connecting` or `offline`.
    pub state: &'static str,
    /// Unix seconds of the last link.
    pub last_seen: Option<u64>,
    /// Every known address: current ones first, then stale ones, newest first.
    pub endpoints: Vec<EndpointJson>,
}

/// One address of a contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointJson {
    /// The URL.
    pub url: String,
    /// Where we learned it.
    pub source: EndpointSource,
    /// Unix seconds when we learned it.
    pub learned_at: u64,
    /// `connected`, `dialing`, `waiting`, `idle` or `stale`.
    pub state: EndpointState,
    /// Unix seconds of the last dial that reached the contact here (this run).
    pub last_ok: Option<u64>,
    /// The round trip of that dial, timed over its handshake.
    pub rtt_ms: Option<u32>,
    /// Why the last dial here failed, in words.
    pub last_error: Option<String>,
    /// Unix seconds of the next dial here (`waiting` only).
    pub next_retry_at: Option<u64>,
    /// Unix seconds since it is stale.
    pub stale_since: Option<u64>,
}

impl From<&SelfNet> for SelfJson {
    fn from(s: &SelfNet) -> Self {
        SelfJson {
            role: s.role.as_str(),
            listening: s.listening.clone(),
            urls: s
                .urls
                .iter()
                .map(|(url, reach)| UrlJson {
                    url: url.clone(),
                    reach: *reach,
                })
                .collect(),
            home_node: s.home_node.as_ref().map(|h| HomeNodeJson {
                person_id: h.person_id.clone(),
                name: h.name.clone(),
            }),
            discovery: s.discovery,
        }
    }
}

impl From<&EndpointView> for EndpointJson {
    fn from(e: &EndpointView) -> Self {
        EndpointJson {
            url: e.note.url.clone(),
            source: e.note.source,
            learned_at: e.note.learned_at,
            state: e.state,
            last_ok: e.last_ok,
            rtt_ms: e.rtt_ms,
            last_error: e.last_error.clone(),
            next_retry_at: e.next_retry_at,
            stale_since: e.note.stale_since,
        }
    }
}

impl From<&ContactNet> for ContactNetJson {
    fn from(c: &ContactNet) -> Self {
        ContactNetJson {
            person_id: c.person_id.clone(),
            name: c.name.clone(),
            state: c.state.as_str(),
            last_seen: c.last_seen,
            endpoints: c.endpoints.iter().map(EndpointJson::from).collect(),
        }
    }
}

/// The fields of the `endpoints` event.
pub fn parts(v: &NetView) -> (SelfJson, Vec<ContactNetJson>) {
    (
        SelfJson::from(&v.me),
        v.contacts.iter().map(ContactNetJson::from).collect(),
    )
}
