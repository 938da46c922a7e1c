//! The network view: where this instance can be reached, and for each contact every known
//! address with where it came from and what the dialer is doing with it. The stored notes
//! say where an address came from; what each dial did is kept here, in memory (it is
//! about this run of the program).

use crate::core::{Conn, ConnId, NodeCore, Role};
use crate::domain::{EndpointNote, EndpointState, Reach};
use crate::net::manager::DialState;

/// What dialing one address of a contact did, in this run.
#[derive(Clone, Debug, Default)]
pub(super) struct UrlLive {
    /// When the dial in flight started (unix ms).
    dial_started: Option<u64>,
    /// Unix seconds of the last dial that reached the contact.
    last_ok: Option<u64>,
    /// The round trip timed over that dial's handshake.
    rtt_ms: Option<u32>,
    /// Why the last dial failed, cleared by a success.
    last_error: Option<String>,
}

/// This instance in the network view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfNet {
    /// Role.
    pub role: Role,
    /// The socket address a node listens on.
    pub listening: Option<String>,
    /// The URLs it gives out (in its profile, invitations and announcements), each with who
    /// can use it.
    pub urls: Vec<(String, Reach)>,
    /// Our home node: the contact that stores and forwards our channels.
    pub home_node: Option<HomeNode>,
    /// Local discovery: `local`, `lan` or `off`.
    pub discovery: &'static str,
}

/// Our home node, as the network view names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HomeNode {
    /// Its person id.
    pub person_id: String,
    /// Its name.
    pub name: String,
}

/// One address of a contact in the network view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointView {
    /// Where it came from, when, whether it is stale.
    pub note: EndpointNote,
    /// What the dialer is doing with it.
    pub state: EndpointState,
    /// Unix seconds of the last dial that reached the contact here.
    pub last_ok: Option<u64>,
    /// Round trip of that dial (ms).
    pub rtt_ms: Option<u32>,
    /// Why the last dial here failed.
    pub last_error: Option<String>,
    /// Unix seconds of the next dial here.
    pub next_retry_at: Option<u64>,
}

/// A contact in the network view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactNet {
    /// Person id.
    pub person_id: String,
    /// Name.
    pub name: String,
    /// The contact's link.
    pub state: crate::core::PeerState,
    /// Unix seconds of the last time a link was up.
    pub last_seen: Option<u64>,
    /// Every known address, current ones first, then stale ones.
    pub endpoints: Vec<EndpointView>,
}

/// The `endpoints` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetView {
    /// This instance.
    pub me: SelfNet,
    /// Every contact.
    pub contacts: Vec<ContactNet>,
}

impl NodeCore {
    /// A dial of `url` for `pid` starts now.
    pub(super) fn note_dial_started(&mut self, pid: &str, url: &str) {
        let now = self.now;
        let live = self.live.entry(pid.to_string()).or_default();
        live.urls.entry(url.to_string()).or_default().dial_started = Some(now);
    }

    /// A dial of `url` reached `pid` (whether or not its link is kept).
    pub(super) fn note_dial_ok(&mut self, pid: &str, url: &str, rtt_ms: u32, conn: ConnId) {
        let now = self.now_secs();
        let linked = self.links.get(pid).is_some_and(|l| l.conn == conn);
        let live = self.live.entry(pid.to_string()).or_default();
        let u = live.urls.entry(url.to_string()).or_default();
        u.dial_started = None;
        u.last_ok = Some(now);
        u.rtt_ms = Some(rtt_ms);
        u.last_error = None;
        if linked {
            live.link_url = Some(url.to_string());
        }
    }

    /// A dial of `url` for `pid` failed with `error` (in words).
    pub(super) fn note_dial_failed(&mut self, pid: &str, url: &str, error: &str) {
        let live = self.live.entry(pid.to_string()).or_default();
        let u = live.urls.entry(url.to_string()).or_default();
        u.dial_started = None;
        u.last_error = Some(error.to_string());
    }

    /// The network view, now.
    pub(super) fn net_view(&self) -> Result<NetView, crate::core::CommandError> {
        let contacts = self.store.contacts()?;
        let home_node = contacts.iter().find(|c| c.replica).map(|c| HomeNode {
            person_id: c.person_id().to_string(),
            name: c.person.name.clone(),
        });
        let me = SelfNet {
            role: self.cfg.role,
            listening: self.cfg.listening.clone(),
            urls: self
                .info
                .endpoint
                .iter()
                .map(|u| (u.clone(), Reach::of_url(u)))
                .collect(),
            home_node,
            discovery: self.cfg.discovery.as_str(),
        };
        let contacts = contacts
            .iter()
            .map(|c| {
                let pid = c.person_id();
                let live = self.live.get(pid.as_str());
                ContactNet {
                    state: self.peer_state(&pid),
                    last_seen: live.and_then(|l| l.last_seen),
                    endpoints: c
                        .endpoint_notes()
                        .into_iter()
                        .map(|note| self.endpoint_view(&pid, live, note))
                        .collect(),
                    person_id: pid.to_string(),
                    name: c.person.name.clone(),
                }
            })
            .collect();
        Ok(NetView { me, contacts })
    }

    fn endpoint_view(
        &self,
        pid: &str,
        live: Option<&super::LiveState>,
        note: EndpointNote,
    ) -> EndpointView {
        let u = live.and_then(|l| l.urls.get(&note.url));
        let dialing = self.conns.values().any(|c| {
            matches!(c, Conn::DialContact { person_id, url } if person_id == pid && *url == note.url)
        });
        let next = self.manager.target(pid).and_then(|t| match t.state {
            DialState::Waiting { next_at_ms } if !t.urls.is_empty() => {
                let (url, _) = &t.urls[t.next_url % t.urls.len()];
                (*url == note.url).then_some(next_at_ms)
            }
            _ => None,
        });
        let state = if note.stale_since.is_some() {
            EndpointState::Stale
        } else if self.links.contains_key(pid)
            && live.and_then(|l| l.link_url.as_deref()) == Some(note.url.as_str())
        {
            EndpointState::Connected
        } else if dialing {
            EndpointState::Dialing
        } else if next.is_some() && !self.links.contains_key(pid) {
            EndpointState::Waiting
        } else {
            EndpointState::Idle
        };
        EndpointView {
            state,
            last_ok: u.and_then(|u| u.last_ok),
            rtt_ms: u.and_then(|u| u.rtt_ms),
            last_error: u.and_then(|u| u.last_error.clone()),
            // Seconds, rounded up: the dial happens at or before this second ends.
            next_retry_at: (state == EndpointState::Waiting)
                .then(|| next.map(|ms| ms.div_ceil(1000)))
                .flatten(),
            note,
        }
    }
}
