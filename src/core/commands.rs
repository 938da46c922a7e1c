//! The commands that need no network exchange: contacts, invitations and short codes,
//! cards, channels and messages, history, stats, the profile. (Pairing and `connect`
//! start in `pair`, and answer when their exchange ends.)

use std::collections::BTreeSet;

use crate::core::{
    Answer, ArgError, CodeReach, Command, CommandError, CommandId, Conn, ContactView, MessageView,
    NewInvite, NodeCore, Output, PeerState, Rng, Role, StatsView,
};
use crate::domain::codes::TOKEN_LEN;
use crate::domain::identity::{check_name, parse_hex, short_id, verification_string};
use crate::domain::invitation::InviteRecord;
use crate::domain::log::LogError;
use crate::domain::short_code::{ShortCode, MAX_CODE_TTL_SECS, MAX_SLOT};
use crate::domain::{
    Body, Card, Channel, Code, Entry, Invite, InviteState, InviteStatus, PersonId,
};
use crate::net::handshake::HelloExtras;
use crate::net::manager::DialState;
use crate::net::pairing::{self, direct_channel};
use crate::net::sync::{load_roster, WriteError};
use crate::net::wire::CloseCode;

pub(super) type Answered = Result<Answer, CommandError>;

impl NodeCore {
    pub(super) fn on_command(&mut self, id: CommandId, cmd: Command, rng: &mut dyn Rng) {
        let result = match cmd {
            Command::Identity => Ok(Answer::Identity(self.info.clone())),
            Command::Contacts => self.contact_views().map(Answer::Contacts),
            Command::Connect { url } => return self.dial_once(id, url),
            Command::Invite { ttl_secs } => self.new_invite(ttl_secs, rng),
            Command::Invites => self
                .store
                .invites()
                .map(Answer::Invites)
                .map_err(Into::into),
            Command::RevokeInvite { code } => self.revoke(&code),
            Command::ShortCode { ttl_secs } if self.cfg.role == Role::Client => {
                return self.ask_home_short_code(id, ttl_secs)
            }
            Command::ShortCode { ttl_secs } => self.new_short_code(ttl_secs, rng),
            Command::Accept { code, replica, via } => {
                return self.start_accept(id, code, replica, via)
            }
            Command::AcceptPake { code, url, replica } => {
                return self.start_accept_pake(Some(id), code, url, replica)
            }
            Command::Card => Ok(Answer::Card(self.card())),
            Command::AddContact { card } => self.add_card(&card).map(Answer::Paired),
            Command::RemoveContact { person_id } => self.remove_contact(&person_id),
            Command::Channels => self.channel_list(),
            Command::CreateChannel { name, members } => self.create_channel(name, members, rng),
            Command::ChangeMembers {
                channel,
                person_id,
                add,
            } => self.change_members(&channel, person_id, add),
            Command::Send { channel, text } => self
                .write(&channel, Body::Text { text })
                .map(|e| Answer::EntryId(e.id())),
            Command::History {
                channel,
                before,
                limit,
            } => self.history(&channel, before.as_deref(), limit),
            Command::Stats => Ok(Answer::Stats(self.stats())),
            Command::Endpoints => self.net_view().map(|v| Answer::Endpoints(Box::new(v))),
            Command::MarkRead { channel } => {
                self.store.clear_unread(&channel);
                self.store
                    .flush()
                    .map(|()| Answer::Done)
                    .map_err(Into::into)
            }
            Command::Reconnect => Ok(Answer::Reconnecting(self.reconnect())),
            Command::SetDisplayName { name } => self.set_display_name(name),
            Command::TrustEndpoint { person_id, url } => {
                let source = crate::domain::EndpointSource::Provisioning;
                if let Err(e) = self.update_endpoint_url(&person_id, &url, source) {
                    tracing::warn!("cannot record endpoint: {e}");
                }
                Ok(Answer::Done)
            }
        };
        self.reply(id, result);
    }

    /// A contact's link: up, being dialed, or neither.
    pub(super) fn peer_state(&self, pid: &str) -> PeerState {
        if self.links.contains_key(pid) {
            PeerState::Connected
        } else if self.manager.state(pid) == Some(&DialState::Dialing) {
            PeerState::Connecting
        } else if self
            .homes
            .iter()
            .any(|(node, owners)| owners.contains(pid) && self.links.contains_key(node.as_str()))
        {
            PeerState::ViaHome
        } else {
            PeerState::Offline
        }
    }

    fn dial_once(&mut self, id: CommandId, url: String) {
        let conn = self.next_conn_id();
        self.conns.insert(conn, Conn::DialOnce(id));
        self.out.push(Output::Dial {
            conn,
            url,
            expected_key: None,
            extras: HelloExtras::default(),
        });
    }

    fn contact_views(&self) -> Result<Vec<ContactView>, CommandError> {
        self.store
            .contacts()?
            .into_iter()
            .map(|c| {
                let id = c.person_id();
                let live = self.live.get(id.as_str()).cloned().unwrap_or_default();
                let state = self.peer_state(&id);
                Ok(ContactView {
                    behind: self.engine.behind(&*self.store, &id)?,
                    verification: verification_string(&self.me.person, &c.person),
                    contact: c,
                    state,
                    last_error: live.last_error,
                    last_seen: live.last_seen,
                    refused_us: live.refused_us,
                })
            })
            .collect()
    }

    fn new_invite(&mut self, ttl_secs: u64, rng: &mut dyn Rng) -> Answered {
        if self.cfg.role != Role::Node {
            return self.home_invite(ttl_secs, rng);
        }
        let urls = self.advertised();
        let mut token = [0u8; TOKEN_LEN];
        rng.fill_bytes(&mut token);
        let now = self.now_secs();
        let mut rec = pairing::new_invite_record(token, String::new(), now, ttl_secs);
        let invite = Invite {
            person_id: parse_hex::<32>(&self.me.person_id(), "person_id")
                .expect("invariant: our id is 32 bytes of hex"),
            home: None,
            transport_key: self.our_transport_key(),
            token,
            expires_at: rec.expires_at,
            urls: urls.clone(),
        };
        rec.code = Code::Invite(invite).encode();
        self.store.put_invite(&rec)?;
        tracing::info!(expires_at = rec.expires_at, "invitation created");
        Ok(Answer::NewInvite(NewInvite {
            code: rec.code,
            expires_at: rec.expires_at,
            reach: CodeReach::of(&urls),
            url: None,
        }))
    }

    /// The URLs a node's codes carry.
    pub(super) fn advertised(&self) -> Vec<String> {
        if self.cfg.advertised.is_empty() {
            self.info.endpoint.iter().cloned().collect()
        } else {
            self.cfg.advertised.clone()
        }
    }

    /// Open invitations whose code names other URLs than the node that holds them has now
    /// (this node restarted on another port or its addresses changed; for a client's code,
    /// its home node moved) get a new code for the same token and expiry: the list shows
    /// codes that work, never dead ones as open.
    pub(super) fn reissue_moved_invites(&mut self) {
        let own = self.advertised();
        let own = (self.cfg.role == Role::Node && !own.is_empty()).then_some(own);
        let now = self.now_secs();
        let Ok(list) = self.store.invites() else {
            return;
        };
        for mut rec in list {
            if rec.status != InviteStatus::Open || rec.expires_at <= now {
                continue;
            }
            let Ok(Code::Invite(mut inv)) = Code::decode(&rec.code) else {
                continue; // a short code names no URL
            };
            let urls = match inv.home {
                Some(home) => self.home_urls(&crate::domain::hex::encode(home)),
                None => own.clone(),
            };
            let Some(urls) = urls.filter(|u| !u.is_empty() && *u != inv.urls) else {
                continue;
            };
            inv.urls = urls;
            rec.code = Code::Invite(inv).encode();
            match self.store.put_invite(&rec) {
                Ok(()) => tracing::info!("an open invitation now names this node's new address"),
                Err(e) => tracing::warn!("cannot re-issue an open invitation: {e}"),
            }
        }
    }

    fn revoke(&mut self, code: &str) -> Answered {
        let now = self.now_secs();
        let key = if ShortCode::looks_like(code) {
            pairing::short_code_key(ShortCode::parse(code)?.slot)
        } else {
            let Code::Invite(inv) = Code::decode(code)? else {
                return Err(ArgError::CardNotRevocable.into());
            };
            crate::domain::hex::encode(inv.token)
        };
        let rec = self.store.revoke_invite(&key, now)?;
        if let Some(r) = &rec {
            self.tell_home_invite(r);
        }
        rec.map(Answer::Invite).ok_or(CommandError::UnknownInvite)
    }

    fn new_short_code(&mut self, ttl_secs: u64, rng: &mut dyn Rng) -> Answered {
        if self.cfg.role != Role::Node {
            return Err(CommandError::NotANode);
        }
        let rec = self.short_code_record(None, ttl_secs, rng)?;
        let urls = self.advertised();
        Ok(Answer::NewInvite(NewInvite {
            code: rec.code,
            expires_at: rec.expires_at,
            reach: CodeReach::of(&urls),
            url: urls.first().cloned(),
        }))
    }

    /// A node: a new short code on a free number, stored, for us (`owner` `None`) or for
    /// an owner of ours whose home node we are.
    pub(super) fn short_code_record(
        &mut self,
        owner: Option<&str>,
        ttl_secs: u64,
        rng: &mut dyn Rng,
    ) -> Result<InviteRecord, CommandError> {
        let now = self.now_secs();
        let taken: BTreeSet<String> = self
            .store
            .invites()?
            .into_iter()
            .filter(|r| r.token.starts_with("short:") && r.status_at(now) == InviteState::Open)
            .map(|r| r.token)
            .collect();
        let mut rnd = [0u8; 5];
        rng.fill_bytes(&mut rnd);
        // A short number first (quick to read out); longer ones only when many are open.
        let start = u16::from_le_bytes([rnd[0], rnd[1]]);
        let slot = [(1u16, 99u16), (100, MAX_SLOT)]
            .into_iter()
            .find_map(|(lo, hi)| {
                let span = hi - lo + 1;
                (0..span)
                    .map(|i| lo + (start.wrapping_add(i)) % span)
                    .find(|s| !taken.contains(&pairing::short_code_key(*s)))
            })
            .ok_or(ArgError::NoFreeShortCode)?;
        let code = ShortCode::new(slot, [rnd[2], rnd[3], rnd[4]]);
        let rec = InviteRecord {
            token: pairing::short_code_key(slot),
            code: code.reveal(),
            created_at: now,
            expires_at: now + ttl_secs.clamp(1, MAX_CODE_TTL_SECS),
            status: InviteStatus::Open,
            attempts: 0,
            owner: owner.map(str::to_string),
            relayed: false,
        };
        self.store.put_invite(&rec)?;
        // The number is not secret; the words are, and stay out of the log.
        tracing::info!(
            slot,
            expires_at = rec.expires_at,
            owner,
            "short code created"
        );
        Ok(rec)
    }

    fn our_transport_key(&self) -> [u8; 32] {
        self.me
            .instance
            .transport_key_bytes()
            .expect("invariant: our transport key is valid")
    }

    fn card(&self) -> String {
        Code::Card(Card {
            name: self.me.person.name.clone(),
            person_key: self
                .me
                .person
                .verifying_key()
                .expect("invariant: our own key is valid")
                .to_bytes(),
            instance_id: parse_hex::<32>(&self.me.instance_id(), "instance_id")
                .expect("invariant: our id is 32 bytes of hex"),
            transport_key: self.our_transport_key(),
            urls: self.info.endpoint.iter().cloned().collect(),
        })
        .encode()
    }

    fn remove_contact(&mut self, person_id: &str) -> Answered {
        let existed = self.store.remove_contact(person_id)?;
        if existed {
            self.manager.remove(person_id);
            if let Some(conn) = self.links.get(person_id).map(|s| s.conn) {
                let reason = "you were removed from this instance's contacts";
                self.close(conn, CloseCode::NotAContact, reason);
            }
            self.refresh_replicated();
            self.refresh_homes();
            self.refresh_profile();
            self.vouch_all();
            tracing::info!(peer = %person_id, "contact removed");
        }
        Ok(Answer::Removed(existed))
    }

    fn channel_list(&self) -> Answered {
        let list = self.store.channel_records()?;
        let with_unread = list.into_iter().map(|c| {
            let n = self.store.unread(&c.id);
            (c, n)
        });
        Ok(Answer::Channels(with_unread.collect()))
    }

    fn create_channel(
        &mut self,
        name: String,
        members: Vec<String>,
        rng: &mut dyn Rng,
    ) -> Answered {
        check_name(&name).map_err(|e| ArgError::Name(e.to_string()))?;
        let mut set: BTreeSet<String> = members.into_iter().collect();
        if let Some(m) = set.iter().find(|m| parse_hex::<32>(m, "member").is_err()) {
            return Err(ArgError::MemberNotAPersonId(m.clone()).into());
        }
        set.insert(self.me.person_id().to_string());
        let mut raw = [0u8; 16];
        rng.fill_bytes(&mut raw);
        let id = format!("g-{}", crate::domain::hex::encode(raw));
        let members = set.into_iter().collect();
        self.write(&id, Body::Create { name, members })?;
        Ok(Answer::ChannelId(id))
    }

    fn change_members(&mut self, channel: &str, person_id: String, add: bool) -> Answered {
        if crate::domain::channel::direct_members(channel).is_some() {
            return Err(ArgError::DirectChannelFixed.into());
        }
        if parse_hex::<32>(&person_id, "person_id").is_err() {
            return Err(ArgError::NotAPersonId(person_id).into());
        }
        let (add, remove) = if add {
            (vec![person_id], vec![])
        } else {
            (vec![], vec![person_id])
        };
        // The engine records each person's log head (`heads`) when it signs.
        let heads = Default::default();
        self.write(channel, Body::Members { add, remove, heads })?;
        let rec = self.store.channel_record(channel)?;
        Ok(Answer::Members(rec.map(|c| c.members).unwrap_or_default()))
    }

    /// Write one of our entries (durable on return) and push it to the links.
    fn write(&mut self, channel: &str, body: Body) -> Result<Entry, CommandError> {
        let now = self.now;
        let (e, out) = self
            .engine
            .write(&mut *self.store, &self.me, channel, body, now)
            .map_err(|e| match e {
                WriteError::Log(l) if l.disk_full => CommandError::Store(l),
                WriteError::Log(l) => {
                    CommandError::Store(LogError::new(format!("could not store the message: {l}")))
                }
                other => ArgError::Write(other.to_string()).into(),
            })?;
        self.dispatch(out);
        Ok(e)
    }

    pub(super) fn author_name(&self, author: &str) -> String {
        if let Ok(Some(c)) = self.store.contact(author) {
            return c.profile.map(|p| p.name).unwrap_or(c.person.name);
        }
        if author == self.me.person_id() {
            return self.profile.name.clone();
        }
        // A name is for display: an author whose Person cannot be read shows by its id.
        match self.store.person(author) {
            Ok(Some(p)) => p.name,
            _ => short_id(author).to_string(),
        }
    }

    pub(super) fn message_view(&self, e: &Entry) -> MessageView {
        self.message_view_named(e, self.author_name(&e.author))
    }

    /// The view of `e` by an author whose display name the caller already has.
    pub(super) fn message_view_named(&self, e: &Entry, author_name: String) -> MessageView {
        MessageView {
            channel: e.channel.clone(),
            entry: e.id(),
            author: e.author.clone(),
            author_name,
            ts: e.hlc.ms,
            text: e.text().map(str::to_string),
            kind: kind_of(&e.body),
        }
    }

    fn history(&mut self, channel: &str, before: Option<&MessageView>, limit: usize) -> Answered {
        if self.store.channel_record(channel)?.is_none() {
            return Err(ArgError::NoSuchChannel(channel.into()).into());
        }
        // Channel changes (create, members) live in the same view; history shows messages.
        let anchor = match before {
            Some(m) => self.store.entry_by_view(channel, &m.author, &m.entry)?,
            None => None,
        };
        if before.is_some() && anchor.is_none() {
            return Ok(Answer::History(vec![]));
        }
        let mut entries = self.store.history_before(channel, anchor.as_ref(), limit)?;
        while entries.iter().filter(|e| e.text().is_some()).count() < limit {
            let Some(first) = entries.first().cloned() else {
                break;
            };
            let older = self.store.history_before(channel, Some(&first), limit)?;
            if older.is_empty() {
                break;
            }
            entries.splice(0..0, older);
        }
        // An entry its author wrote when not a member (stored before the removal arrived)
        // never shows, so every instance shows the same view.
        let roster = load_roster(&*self.store, channel)?;
        let mut texts: Vec<MessageView> = Vec::new();
        for e in entries.iter().filter(|e| e.text().is_some()) {
            if roster
                .as_ref()
                .is_some_and(|r| r.admits(&e.author, e.seq, &e.view_key()))
            {
                texts.push(self.message_view(e));
            }
        }
        if texts.len() > limit {
            texts.drain(..texts.len() - limit);
        }
        if before.is_none() {
            self.store.clear_unread(channel);
        }
        Ok(Answer::History(texts))
    }

    fn stats(&self) -> StatsView {
        StatsView {
            bytes_in: 0,
            bytes_out: 0,
            entries: self.store.entry_count() as u64,
            received: self.engine.stats.received,
            duplicates: self.engine.stats.duplicates,
            invalid: self.engine.stats.invalid,
            links: self.links.len() as u64,
        }
    }

    fn reconnect(&mut self) -> usize {
        let links: Vec<(PersonId, u64)> = self
            .links
            .iter()
            .map(|(p, s)| (p.clone(), s.conn))
            .collect();
        for (pid, conn) in &links {
            self.redial.insert(pid.clone());
            self.close(*conn, CloseCode::Shutdown, "reconnecting");
        }
        links.len()
    }

    fn set_display_name(&mut self, name: String) -> Answered {
        check_name(&name).map_err(|e| ArgError::Name(e.to_string()))?;
        let version = self.now.max(self.profile.version + 1);
        let mut p = self.profile.clone();
        p.name = name;
        p.version = version;
        let p = crate::domain::Profile::signed_from(&self.me, p);
        self.store.put_own_profile(&p)?;
        self.publish_profile(p);
        Ok(Answer::ProfileVersion(version))
    }

    /// Import a contact card: a one-sided contact until the other side imports ours.
    pub(super) fn add_card(&mut self, card: &str) -> Result<crate::core::Paired, CommandError> {
        let Code::Card(c) = Code::decode(card)? else {
            return Err(ArgError::InviteNotCard.into());
        };
        let key = ed25519_dalek::VerifyingKey::from_bytes(&c.person_key)
            .map_err(|_| ArgError::BadCardKey)?;
        check_name(&c.name).map_err(|e| ArgError::Name(e.to_string()))?;
        let person = crate::domain::Person::new(&c.name, &key);
        let pid = person.id();
        if pid == self.me.person_id() {
            return Err(ArgError::OwnCard.into());
        }
        let endpoints = c
            .urls
            .iter()
            .map(|u| crate::domain::Endpoint {
                person_id: pid.to_string(),
                instance_id: crate::domain::hex::encode(c.instance_id),
                url: u.clone(),
                transport_key: crate::domain::hex::encode(c.transport_key),
            })
            .collect();
        let now = self.now_secs();
        let mut contact = self.store.contact(&pid)?.unwrap_or(crate::domain::Contact {
            person: person.clone(),
            instances: vec![],
            endpoints: vec![],
            profile: None,
            replica: false,
            replica_for: false,
            via: crate::domain::Via::Card,
            added_at: now,
            endpoint_notes: vec![],
            vouched_by: vec![],
        });
        contact.set_endpoints(endpoints, crate::domain::EndpointSource::Card, now);
        let channel: Channel = direct_channel(&self.me.person_id(), &pid, &person.name, now);
        self.store.commit_pairing(None, &contact, &channel, now)?;
        let targets = crate::core::links::dial_targets(&contact);
        self.manager.set_endpoints(&pid, targets, self.now);
        self.vouch_all();
        tracing::info!(peer = %pid, "contact added from a card");
        Ok(crate::core::Paired {
            verification: verification_string(&self.me.person, &person),
            person_id: pid.to_string(),
            name: person.name,
        })
    }
}

/// The kind of an entry as views and events name it.
pub(super) fn kind_of(body: &Body) -> &'static str {
    match body {
        Body::Text { .. } => "text",
        Body::Create { .. } => "create",
        Body::Members { .. } => "members",
    }
}
