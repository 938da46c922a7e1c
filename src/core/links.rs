//! Links: the duplicate rule, link-up and link-down, what flows on a link (sync, profiles),
//! endpoints learned from profiles and discovery, the dial schedule, and the full disk.

use crate::core::{Conn, ConnId, CoreStore, Event, IdentityInfo, LinkSlot, NodeCore, Output, Rng};
use crate::domain::identity::{parse_hex, short_id, LocalIdentity};
use crate::domain::log::LogError;
use crate::domain::{
    Contact, Endpoint, EndpointSource, ErrorKind, PeerIdentity, PersonId, Profile,
};
use crate::net::discovery::Announcement;
use crate::net::handshake::{msg_name, HelloExtras};
use crate::net::link::LinkEnd;
use crate::net::manager::{keep_new_link, LinkMeta, RETIRE_GRACE_MS};
use crate::net::sync::{Output as SyncOutput, PeerInfo, SyncMsg};
use crate::net::wire::{CloseCode, WireMsg};
use std::collections::{BTreeMap, HashMap};

/// The (url, key) pairs the manager dials for a contact: its own instances' endpoints
/// (those of its home nodes are dialed as the home nodes, see `home`).
pub fn dial_targets(c: &Contact) -> Vec<(String, [u8; 32])> {
    let pid = c.person_id();
    c.endpoints
        .iter()
        .filter(|e| e.person_id == pid)
        .filter_map(|e| {
            parse_hex::<32>(&e.transport_key, "transport_key")
                .ok()
                .map(|k| (e.url.clone(), k))
        })
        .collect()
}

/// The contact's instance with transport key `key`, as the peer a `hello_known` from that
/// key is (a full Hello proved the instance when we learned it).
fn peer_of(c: &Contact, key: &[u8; 32]) -> Option<PeerIdentity> {
    let instance = c
        .instances
        .iter()
        .find(|i| i.transport_key_bytes().ok().as_ref() == Some(key))?;
    Some(PeerIdentity {
        person: c.person.clone(),
        instance: instance.clone(),
        person_id: c.person_id(),
        instance_id: instance.id(),
    })
}

/// Our profile: the stored one while our endpoint and name are unchanged, else a new
/// version (stored).
pub fn current_profile(
    me: &LocalIdentity,
    info: &IdentityInfo,
    store: &mut dyn CoreStore,
    now: u64,
) -> Result<Profile, LogError> {
    let mut endpoints: Vec<Endpoint> = info
        .endpoint
        .iter()
        .map(|url| Endpoint {
            person_id: me.person_id().to_string(),
            instance_id: me.instance_id().to_string(),
            url: url.clone(),
            transport_key: me.instance.transport_key.clone(),
        })
        .collect();
    // A client is reached through its home node: our profile names the node's endpoints,
    // our word to our contacts that it carries our mail.
    if info.endpoint.is_none() {
        for home in store.contacts()?.into_iter().filter(|c| c.replica) {
            let hid = home.person_id();
            let own = home.endpoints.into_iter().filter(|e| e.person_id == hid);
            endpoints.extend(own.take(MAX_ADVERTISED_HOME_URLS));
        }
    }
    Ok(match store.own_profile()? {
        Some(p) if p.endpoints == endpoints && p.name == me.person.name => p,
        old => {
            let version = now.max(old.map(|p| p.version + 1).unwrap_or(0));
            let p = Profile::signed(me, endpoints, version);
            store.put_own_profile(&p)?;
            p
        }
    })
}

/// Most endpoints of a home node a client's profile names.
const MAX_ADVERTISED_HOME_URLS: usize = 4;

/// What a retired link needs to take over: the peer, the link's key, the version of our
/// profile the peer holds.
type Standby = (PeerIdentity, String, Option<u64>);

/// A link that lost the duplicate rule, open until `until` (ms).
pub(super) struct Retired {
    conn: ConnId,
    until: u64,
    standby: Option<Standby>,
}

impl Retired {
    /// When it is closed (ms).
    pub(super) fn until(&self) -> u64 {
        self.until
    }

    /// Whether it is connection `conn`.
    pub(super) fn is(&self, conn: ConnId) -> bool {
        self.conn == conn
    }
}

/// The key that orders two links of the same pair the same way on both sides: the
/// instance that dialed, and the session's handshake hash.
pub fn link_key(dialer_instance: &str, hash: &[u8]) -> String {
    format!("{dialer_instance}/{}", crate::domain::hex::encode(hash))
}

impl NodeCore {
    /// A connection is authorised: make it the link to `peer`, unless the duplicate rule
    /// keeps the link we have.
    pub(super) fn link_up(
        &mut self,
        conn: ConnId,
        peer: PeerIdentity,
        key: String,
        peer_known_profile: Option<u64>,
    ) {
        if self.store_full {
            self.out.push(Output::Disconnect { conn });
            return;
        }
        let now = self.now;
        let meta = LinkMeta {
            dialer_instance: key,
            up_at_ms: now,
        };
        if let Some(old) = self.links.get(&peer.person_id) {
            if !keep_new_link(&old.meta, &meta, now) {
                tracing::debug!(peer = %peer.person_id, "duplicate link: ours is kept");
                let pid = peer.person_id.clone();
                let standby = (peer, meta.dialer_instance, peer_known_profile);
                return self.retire(conn, &pid, Some(standby));
            }
            let old = old.conn;
            self.engine.close(old);
            self.retire(old, &peer.person_id, None);
        }
        let is_my_replica = self.learn_instance(&peer);
        // An unchanged profile is not sent again (it is most of a quiet reconnect's bytes).
        if peer_known_profile != Some(self.profile.version) {
            let profile = self.profile.clone();
            self.send(conn, WireMsg::Profile { profile });
        }
        let pid = peer.person_id.clone();
        let first = !self.links.contains_key(&pid);
        self.links.insert(pid.clone(), LinkSlot { conn, meta });
        self.conns.insert(conn, Conn::Link(pid.clone()));
        self.manager.link_up(&pid);
        let info = PeerInfo {
            person_id: pid.to_string(),
            is_my_replica,
            replica_of: self.homes.get(pid.as_str()).cloned().unwrap_or_default(),
        };
        match self.engine.open(&*self.store, conn, info) {
            Ok(out) => self.dispatch(out),
            Err(e) => self.link_store_fault(conn, &e),
        }
        self.home_link_up(conn, &pid, is_my_replica);
        let st = self.live.entry(pid.to_string()).or_default();
        st.last_seen = Some(now / 1000);
        st.last_error = None;
        st.refused_us = None;
        // A dialed link names its address after this (`note_dial_ok`).
        st.link_url = None;
        if first {
            tracing::info!(peer = %pid, "connected");
            self.emit(Event::Connected {
                person_id: pid.to_string(),
                name: peer.person.name,
            });
        }
    }

    /// Record the peer's instance (e.g. a card contact's first connection) for discovery
    /// checks; whether the peer is our home node.
    fn learn_instance(&mut self, peer: &PeerIdentity) -> bool {
        let Ok(Some(mut c)) = self.store.contact(&peer.person_id) else {
            return false;
        };
        if !c.instances.iter().any(|i| i == &peer.instance) {
            c.instances.retain(|i| i.id() != peer.instance_id);
            c.instances.push(peer.instance.clone());
            if let Err(e) = self.store.put_contact(&c) {
                tracing::warn!("cannot record instance: {e}");
            }
        }
        // A pairing stores the instance with the contact: the first link publishes it.
        if !self.known_ids.contains(peer.instance_id.as_str()) {
            self.publish_known();
        }
        c.replica
    }

    pub(super) fn on_link_down(&mut self, conn: ConnId, pid: PersonId, end: LinkEnd) {
        if self.links.get(&pid).map(|s| s.conn) != Some(conn) {
            return; // a replaced or losing duplicate link
        }
        self.links.remove(&pid);
        self.engine.close(conn);
        if self.take_over(&pid) {
            return;
        }
        let now = self.now;
        let st = self.live.entry(pid.to_string()).or_default();
        st.last_seen = Some(now / 1000);
        st.link_url = None;
        if end.code != Some(CloseCode::Shutdown) {
            st.last_error = Some(end.reason.clone());
        }
        self.manager.link_down(&pid, now);
        if self.redial.remove(&pid) {
            self.manager.redial_now(&pid, now);
            self.poll_manager();
        }
        tracing::info!(peer = %pid, "disconnected: {}", end.reason);
        self.emit(Event::Disconnected {
            person_id: pid.to_string(),
            reason: end.reason,
        });
    }

    pub(super) fn on_link_msg(&mut self, conn: ConnId, pid: &str, msg: WireMsg, rng: &mut dyn Rng) {
        if self.links.get(pid).map(|s| s.conn) != Some(conn) {
            return; // in flight on a link that was replaced
        }
        match msg {
            WireMsg::Sync { msg } => self.on_sync(conn, msg),
            WireMsg::Profile { profile } => {
                if let Err(e) = self.on_profile(pid, profile) {
                    tracing::warn!(peer = %pid, "profile ignored: {e}");
                }
            }
            m @ (WireMsg::HomeInvite { .. }
            | WireMsg::HomePaired { .. }
            | WireMsg::HomePairedAck { .. }
            | WireMsg::HomeShortCode { .. }
            | WireMsg::HomeShortCodeMade { .. }
            | WireMsg::Vouch { .. }
            | WireMsg::VouchEnd { .. }) => self.on_home_msg(conn, pid, m, rng),
            other => tracing::debug!(peer = %pid, "unexpected {}", msg_name(&other)),
        }
    }

    fn on_sync(&mut self, conn: ConnId, msg: SyncMsg) {
        match self.engine.handle(&mut *self.store, conn, msg, self.now) {
            Ok(out) => self.dispatch(out),
            Err(e) => self.link_store_fault(conn, &e),
        }
    }

    /// The store failed while syncing on `conn`: nothing of it was acknowledged, so the
    /// peer sends it again on the next link; report it and drop this link.
    fn link_store_fault(&mut self, conn: ConnId, e: &LogError) {
        tracing::error!("storing synced entries failed: {e}");
        let kind = if e.disk_full {
            ErrorKind::DiskFull
        } else {
            ErrorKind::Store
        };
        let message = format!("cannot store received messages: {e}; they will be fetched again");
        self.emit(Event::Error { kind, message });
        self.out.push(Output::Disconnect { conn });
    }

    /// Send what the sync engine produced and report what it stored. Acknowledgements wait
    /// for the next [`Input::Commit`](super::Input::Commit): the entries they confirm must be
    /// durable first, and entries arriving together (a batch, many links at once) share
    /// one commit.
    pub(super) fn dispatch(&mut self, mut out: SyncOutput) {
        let sends = std::mem::take(&mut out.send);
        self.uncommitted.append(&mut out.after_flush);
        self.send_sync(sends);
        self.report(out);
    }

    /// One durable commit for every entry received since the last, then their
    /// acknowledgements; on failure none is sent (the peers send them again after the next
    /// link-up) and those links are dropped.
    pub(super) fn commit(&mut self) {
        if self.uncommitted.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.uncommitted);
        match self.store.flush() {
            Ok(()) => self.send_sync(acks),
            Err(e) => {
                tracing::error!("flush before ack failed: {e}");
                self.emit(Event::Error {
                    kind: ErrorKind::Store,
                    message: format!("cannot store received messages: {e}; free disk space, they will be fetched again"),
                });
                let conns: std::collections::BTreeSet<ConnId> =
                    acks.iter().map(|(c, _)| *c).collect();
                for conn in conns {
                    self.out.push(Output::Disconnect { conn });
                }
            }
        }
    }

    fn send_sync(&mut self, sends: Vec<(ConnId, SyncMsg)>) {
        // Every sync message leaves through here: once any write has hit a full disk,
        // nothing more is sent (an entry whose flush failed must not reach a peer).
        if self.store.disk_full_seen() {
            self.enter_disk_full();
            return;
        }
        for (conn, msg) in sends {
            if matches!(self.conns.get(&conn), Some(Conn::Link(_))) {
                self.send(conn, WireMsg::Sync { msg });
            }
        }
    }

    fn report(&mut self, out: SyncOutput) {
        if let Some(e) = &out.fault {
            tracing::error!("choosing what to push failed: {e}");
            let message = format!("cannot read the store to push new messages: {e}; peers get them when they reconnect");
            self.emit(Event::Error {
                kind: ErrorKind::Store,
                message,
            });
        }
        let me = self.me.person_id();
        // Per batch, not per entry: one store write per channel for the unread counts, one
        // name lookup per author (a catch-up reports thousands of entries of a few authors).
        let mut unread: BTreeMap<&str, u64> = BTreeMap::new();
        let mut names: HashMap<&str, String> = HashMap::new();
        for e in &out.stored {
            if e.text().is_none() {
                // A channel change: no view to build (that reads the author's name).
                self.emit(Event::ChannelUpdated {
                    channel: e.channel.clone(),
                    kind: super::commands::kind_of(&e.body),
                });
                continue;
            }
            if e.author != me {
                *unread.entry(&e.channel).or_default() += 1;
            }
            let name = names
                .entry(&e.author)
                .or_insert_with(|| self.author_name(&e.author))
                .clone();
            let m = self.message_view_named(e, name);
            self.emit(Event::Message(m));
        }
        for (ch, n) in unread {
            self.store.add_unread(ch, n);
        }
        for pid in out.synced {
            self.emit(Event::Synced { person_id: pid });
        }
        if !out.delivered.is_empty() {
            self.emit(Event::Delivered {
                entries: out.delivered,
            });
        }
        for r in out.rejected {
            tracing::warn!(entry = %short_id(&r.entry), "refused an entry: {}", r.reason);
        }
        for r in out.peer_rejected {
            tracing::warn!(entry = %short_id(&r.entry), "peer refused our entry: {}", r.reason);
        }
    }

    fn on_profile(&mut self, pid: &str, profile: Profile) -> Result<(), String> {
        let Some(mut c) = self.store.contact(pid).map_err(|e| e.to_string())? else {
            return Ok(()); // a stranger under --accept-unknown: nothing to update
        };
        profile.verify(&c.person).map_err(|e| e.to_string())?;
        if c.profile
            .as_ref()
            .is_some_and(|p| p.version >= profile.version)
        {
            return Ok(());
        }
        let changed = c.endpoints != profile.endpoints;
        if changed {
            let now = self.now_secs();
            c.set_endpoints(profile.endpoints.clone(), EndpointSource::Profile, now);
        }
        c.profile = Some(profile);
        self.store.put_contact(&c).map_err(|e| e.to_string())?;
        if changed {
            self.manager.set_endpoints(pid, dial_targets(&c), self.now);
            self.emit(Event::EndpointsChanged {
                person_id: pid.into(),
                urls: c.endpoints.iter().map(|e| e.url.clone()).collect(),
            });
            self.refresh_homes();
            if c.replica {
                // Our home node moved: our profile and open codes name where it is now.
                self.refresh_profile();
                self.reissue_moved_invites();
            }
        }
        Ok(())
    }

    pub(super) fn on_announcement(&mut self, a: Announcement) {
        let Ok(contact) = self.store.contact(&a.person_id) else {
            return;
        };
        let last = self.announce_seen.get(&a.instance_id).copied();
        if let Err(why) = a.verify(contact.as_ref(), self.now, last) {
            tracing::debug!(from = %short_id(&a.person_id), "announcement ignored: {why}");
            return;
        }
        self.announce_seen.insert(a.instance_id.clone(), a.ts);
        let c = contact.expect("invariant: verify() accepted, so the contact exists");
        if c.endpoints
            .iter()
            .any(|e| e.url == a.url && e.instance_id == a.instance_id)
        {
            return;
        }
        tracing::info!(peer = %short_id(&a.person_id), url = %a.url, "endpoint found by discovery");
        if let Err(e) = self.update_endpoint_url(&a.person_id, &a.url, EndpointSource::Discovery) {
            tracing::warn!("cannot record discovered endpoint: {e}");
        }
    }

    /// Point a contact's (first instance's) endpoint at `url`.
    pub(super) fn update_endpoint_url(
        &mut self,
        pid: &str,
        url: &str,
        source: EndpointSource,
    ) -> Result<(), LogError> {
        let Some(mut c) = self.store.contact(pid)? else {
            return Ok(());
        };
        let (instance_id, key) = match (c.endpoints.first(), c.instances.first()) {
            (Some(e), _) => (e.instance_id.clone(), e.transport_key.clone()),
            (None, Some(i)) => (i.id().to_string(), i.transport_key.clone()),
            (None, None) => return Ok(()),
        };
        let mut endpoints = c.endpoints.clone();
        endpoints.retain(|e| e.instance_id != instance_id);
        endpoints.insert(
            0,
            Endpoint {
                person_id: pid.into(),
                instance_id,
                url: url.into(),
                transport_key: key,
            },
        );
        c.set_endpoints(endpoints, source, self.now_secs());
        self.store.put_contact(&c)?;
        self.manager.set_endpoints(pid, dial_targets(&c), self.now);
        self.emit(Event::EndpointsChanged {
            person_id: pid.into(),
            urls: c.endpoints.iter().map(|e| e.url.clone()).collect(),
        });
        Ok(())
    }

    /// Dial the contacts whose time has come.
    pub(super) fn poll_manager(&mut self) {
        if self.store_full {
            return;
        }
        for req in self.manager.poll(self.now) {
            if self.links.contains_key(req.person_id.as_str()) {
                self.manager.link_up(&req.person_id);
                continue;
            }
            let conn = self.next_conn_id();
            let contact = self.store.contact(&req.person_id).ok().flatten();
            let known_profile = contact
                .as_ref()
                .and_then(|c| c.profile.as_ref())
                .map(|p| p.version);
            let known_peer = contact.and_then(|c| peer_of(&c, &req.key)).map(Box::new);
            self.note_dial_started(&req.person_id, &req.url);
            self.conns.insert(
                conn,
                Conn::DialContact {
                    person_id: req.person_id,
                    url: req.url.clone(),
                },
            );
            self.out.push(Output::Dial {
                conn,
                url: req.url,
                expected_key: Some(req.key),
                extras: HelloExtras {
                    known_profile,
                    known_peer,
                    ..HelloExtras::default()
                },
            });
        }
    }

    /// A link that lost the duplicate rule: idle now, closed after [`RETIRE_GRACE_MS`].
    /// `standby`: a new link that lost to the one we have, which takes over if ours ends
    /// first (its peer may have dropped ours and dialed anew before we heard of the drop).
    fn retire(&mut self, conn: ConnId, pid: &PersonId, standby: Option<Standby>) {
        self.conns.insert(conn, Conn::Link(pid.clone()));
        self.retiring.push(Retired {
            conn,
            until: self.now + RETIRE_GRACE_MS,
            standby,
        });
    }

    /// Our link with `pid` ended: a retired one still open takes over, if there is one.
    fn take_over(&mut self, pid: &PersonId) -> bool {
        let found = self.retiring.iter().position(|r| {
            r.standby.as_ref().is_some_and(|s| s.0.person_id == *pid)
                && matches!(self.conns.get(&r.conn), Some(Conn::Link(p)) if p == pid)
        });
        let Some(r) = found.map(|i| self.retiring.remove(i)) else {
            return false;
        };
        let (peer, key, known_profile) = r.standby.expect("invariant: found by its standby");
        tracing::info!(peer = %pid, "link ended; the other link to it takes over");
        self.link_up(r.conn, peer, key, known_profile);
        true
    }

    /// Close the retired links whose grace is over.
    pub(super) fn close_retired(&mut self) {
        let now = self.now;
        let (due, keep): (Vec<_>, Vec<_>) = self.retiring.drain(..).partition(|r| r.until <= now);
        self.retiring = keep;
        for Retired { conn, .. } in due {
            self.close(
                conn,
                CloseCode::Duplicate,
                "another link to this instance is kept",
            );
        }
    }

    /// Tell the shell which instances may greet us with `hello_known`.
    pub(super) fn publish_known(&mut self) {
        let Ok(contacts) = self.store.contacts() else {
            return;
        };
        let peers = contacts
            .iter()
            .flat_map(|c| {
                c.instances
                    .iter()
                    .filter_map(|i| peer_of(c, &i.transport_key_bytes().ok()?))
            })
            .collect::<Vec<_>>();
        self.known_ids = peers.iter().map(|p| p.instance_id.to_string()).collect();
        self.out.push(Output::KnownPeers(peers));
    }

    /// Our profile anew (our home node changed, or where it is); a new version goes to
    /// every link.
    pub(super) fn refresh_profile(&mut self) {
        let p = match current_profile(&self.me, &self.info, &mut *self.store, self.now) {
            Ok(p) => p,
            Err(e) => return tracing::warn!("cannot update our profile: {e}"),
        };
        if p.version != self.profile.version {
            self.publish_profile(p);
        }
    }

    /// Take `p` as our profile and send it on every link.
    pub(super) fn publish_profile(&mut self, p: Profile) {
        self.profile = p;
        let conns: Vec<ConnId> = self.links.values().map(|s| s.conn).collect();
        for conn in conns {
            let profile = self.profile.clone();
            self.send(conn, WireMsg::Profile { profile });
        }
    }

    pub(super) fn refresh_replicated(&mut self) {
        if let Ok(cs) = self.store.contacts() {
            self.engine.set_replicated(
                cs.iter()
                    .filter(|c| c.replica_for)
                    .map(|c| c.person_id().to_string()),
            );
        }
    }

    /// The disk is full: close every link and accept none until the store heals. Nothing
    /// received could be stored anyway, and an entry whose flush failed must not reach a
    /// peer (after the heal its position in the log may be taken by another).
    pub(super) fn enter_disk_full(&mut self) {
        if self.store_full {
            return;
        }
        self.store_full = true;
        tracing::warn!("the disk is full: links are closed until there is room again");
        let conns: Vec<ConnId> = self.links.values().map(|s| s.conn).collect();
        for conn in conns {
            self.out.push(Output::Disconnect { conn });
        }
    }

    /// While the disk is full, try the store again; once it heals, redial everyone so
    /// peers resend what could not be stored. A store that cannot be had back stops the
    /// instance rather than run on without one.
    pub(super) fn heal_store(&mut self) {
        if !self.store_full {
            return;
        }
        match self.store.heal() {
            Ok(false) => {}
            Ok(true) => {
                self.store_full = false;
                tracing::info!("the disk has room again: store reopened");
                let now = self.now;
                let peers: Vec<(PersonId, ConnId)> = self
                    .links
                    .iter()
                    .map(|(p, s)| (p.clone(), s.conn))
                    .collect();
                for (pid, conn) in peers {
                    self.out.push(Output::Disconnect { conn });
                    self.redial.insert(pid);
                }
                if let Ok(cs) = self.store.contacts() {
                    for c in cs {
                        self.manager.redial_now(&c.person_id(), now);
                    }
                }
            }
            Err(e) => {
                tracing::error!("reopening the store failed: {e}");
                self.emit(Event::Error {
                    kind: ErrorKind::Store,
                    message: format!("the store could not be reopened after the disk was full ({e}); restart lama-tui"),
                });
                self.out.push(Output::Stop);
            }
        }
    }
}
