//! Home nodes (docs/PROTOCOL.md, section 6.5). A client invites through its home node,
//! which carries the pairing and hands it to its owner (at once, or when the owner next
//! connects); the owner tells its home node who its contacts are (a round of `vouch`es),
//! so they, and their own home nodes, may reach the owner's channels there; and every
//! instance knows which node is whose home from the signed profiles, to dial it and to
//! judge what a link to it may see.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::api::{CommandError, NewInvite};
use crate::core::commands::Answered;
use crate::core::{CodeReach, ConnId, Event, NodeCore, Rng, Role};
use crate::domain::codes::TOKEN_LEN;
use crate::domain::identity::{
    parse_hex, short_id, verify_hex_sig, vouch_end_signed_bytes, vouch_ids_hash,
    vouch_signed_bytes, Id,
};
use crate::domain::invitation::Guesses;
use crate::domain::{
    Code, Contact, EndpointSource, Invite, InviteRecord, InviteStatus, Person, Profile, Via,
};
use crate::net::pairing::{self, contact_of, direct_channel};
use crate::net::wire::{CloseCode, WireMsg};

/// Which nodes are whose home: node Person id → the persons whose signed profiles name it.
pub(super) type Homes = BTreeMap<Id, BTreeSet<Id>>;

/// The home nodes named by the profiles of `contacts` (never `me`).
pub(super) fn homes_of(contacts: &[Contact], me: &str) -> Homes {
    let mut homes = Homes::new();
    for c in contacts {
        let Some(p) = &c.profile else { continue };
        for node in p.home_nodes() {
            if node != me {
                homes
                    .entry(node.to_string())
                    .or_default()
                    .insert(c.person_id().to_string());
            }
        }
    }
    homes
}

/// The (url, key) pairs to dial each home node at, from the profiles naming it.
fn home_targets(contacts: &[Contact], homes: &Homes) -> BTreeMap<Id, Vec<(String, [u8; 32])>> {
    let mut out: BTreeMap<Id, Vec<(String, [u8; 32])>> = BTreeMap::new();
    for c in contacts {
        for e in c
            .endpoints
            .iter()
            .filter(|e| homes.contains_key(&e.person_id))
        {
            let Ok(key) = parse_hex::<32>(&e.transport_key, "transport_key") else {
                continue;
            };
            let list = out.entry(e.person_id.clone()).or_default();
            if !list.iter().any(|(u, _)| *u == e.url) {
                list.push((e.url.clone(), key));
            }
        }
    }
    out
}

impl NodeCore {
    /// Our home node: the contact we made our replica.
    pub(super) fn home_contact(&self) -> Result<Option<Contact>, CommandError> {
        Ok(self.store.contacts()?.into_iter().find(|c| c.replica))
    }

    /// The link to our home node, if it is up.
    pub(super) fn home_link(&self) -> Option<ConnId> {
        let home = self.home_contact().ok().flatten()?;
        self.links.get(home.person_id().as_str()).map(|s| s.conn)
    }

    /// Recompute which nodes are whose home, and dial the ones that are not contacts.
    pub(super) fn refresh_homes(&mut self) {
        let Ok(contacts) = self.store.contacts() else {
            return;
        };
        let homes = homes_of(&contacts, &self.me.person_id());
        let contact_ids: BTreeSet<String> =
            contacts.iter().map(|c| c.person_id().to_string()).collect();
        for (node, targets) in home_targets(&contacts, &homes) {
            if !contact_ids.contains(&node) {
                self.manager.set_endpoints(&node, targets, self.now);
            }
        }
        for gone in self.homes.keys().filter(|n| !homes.contains_key(*n)) {
            if !contact_ids.contains(gone) {
                self.manager.remove(gone);
            }
        }
        self.homes = homes;
    }

    /// `invite` on a client: a code naming us and our home node, which carries it.
    pub(super) fn home_invite(&mut self, ttl_secs: u64, rng: &mut dyn Rng) -> Answered {
        let home = self.home_contact()?.ok_or(CommandError::NoHomeNode)?;
        let hid = home.person_id();
        let own = own_endpoints(&home);
        let key = own
            .first()
            .and_then(|e| parse_hex::<32>(&e.transport_key, "transport_key").ok())
            .ok_or(CommandError::NoHomeNode)?;
        let urls: Vec<String> = own.iter().map(|e| e.url.clone()).collect();
        let mut token = [0u8; TOKEN_LEN];
        rng.fill_bytes(&mut token);
        let mut rec = pairing::new_invite_record(token, String::new(), self.now_secs(), ttl_secs);
        let invite = Invite {
            person_id: parse_hex::<32>(&self.me.person_id(), "person_id")
                .expect("invariant: our id is 32 bytes of hex"),
            home: Some(parse_hex::<32>(&hid, "person_id").expect("invariant: a stored id")),
            transport_key: key,
            token,
            expires_at: rec.expires_at,
            urls: urls.clone(),
        };
        rec.code = Code::Invite(invite).encode();
        self.store.put_invite(&rec)?;
        tracing::info!(
            expires_at = rec.expires_at,
            "invitation created, for the home node to carry"
        );
        self.tell_home_invite(&rec);
        Ok(crate::core::Answer::NewInvite(NewInvite {
            code: rec.code,
            expires_at: rec.expires_at,
            reach: CodeReach::of(&urls),
            url: None,
        }))
    }

    /// Where our home node `hid` is now, as its own endpoints say (what our codes carry);
    /// `None` if it is not our contact any more or cannot be read.
    pub(super) fn home_urls(&self, hid: &str) -> Option<Vec<String>> {
        let home = self.store.contact(hid).ok()??;
        Some(own_endpoints(&home).iter().map(|e| e.url.clone()).collect())
    }

    /// Hand one of our invitations (or its revocation) to our home node, if linked; the
    /// next link-up hands over every open one anyway.
    pub(super) fn tell_home_invite(&mut self, rec: &InviteRecord) {
        if !self.home_held(rec) {
            return;
        }
        if let Some(conn) = self.home_link() {
            self.send(conn, home_invite_msg(rec));
        }
    }

    /// A link came up: our home node gets our invitations and contacts; an owner of ours
    /// gets the pairings made for it meanwhile.
    pub(super) fn home_link_up(&mut self, conn: ConnId, pid: &str, is_my_replica: bool) {
        let now = self.now_secs();
        if is_my_replica {
            // Open ones to carry, and revocations made while the node was away.
            let live: Vec<WireMsg> = self
                .store
                .invites()
                .unwrap_or_default()
                .iter()
                .filter(|r| r.expires_at > now && self.home_held(r))
                .filter(|r| matches!(r.status, InviteStatus::Open | InviteStatus::Revoked { .. }))
                .map(home_invite_msg)
                .collect();
            for m in live {
                self.send(conn, m);
            }
            self.send_vouches(conn);
        }
        let is_owner = matches!(self.store.contact(pid), Ok(Some(c)) if c.replica_for);
        if is_owner {
            self.send_home_paired(conn, pid);
        }
    }

    /// Every pairing made with `owner`'s invitations that it has not stored yet.
    pub(super) fn send_home_paired(&mut self, conn: ConnId, owner: &str) {
        let invites = self.store.invites().unwrap_or_default();
        for rec in invites
            .into_iter()
            .filter(|r| r.owner.as_deref() == Some(owner))
        {
            let InviteStatus::Used { by, .. } = &rec.status else {
                continue;
            };
            if rec.relayed {
                continue;
            }
            let Ok(Some(c)) = self.store.contact(by) else {
                continue;
            };
            let Some(profile) = c.profile else { continue };
            self.send(
                conn,
                WireMsg::HomePaired {
                    token: rec.token.clone(),
                    person: c.person,
                    profile,
                },
            );
        }
    }

    /// Our contacts, one `vouch` each, then `vouch_end`: the list our home node admits.
    fn send_vouches(&mut self, conn: ConnId) {
        let contacts = self.store.contacts().unwrap_or_default();
        let mut ids = Vec::new();
        for c in contacts
            .iter()
            .filter(|c| !c.replica && c.via != Via::Vouched)
        {
            let sig = self
                .me
                .sign_as_person(&vouch_signed_bytes(&c.person, c.profile.as_ref()));
            ids.push(c.person_id().to_string());
            self.send(
                conn,
                WireMsg::Vouch {
                    person: c.person.clone(),
                    profile: c.profile.clone(),
                    sig: crate::domain::hex::encode(sig.to_bytes()),
                },
            );
        }
        let hash = vouch_ids_hash(ids.iter().map(String::as_str));
        let sig = self.me.sign_as_person(&vouch_end_signed_bytes(&hash));
        self.send(
            conn,
            WireMsg::VouchEnd {
                ids: hash,
                sig: crate::domain::hex::encode(sig.to_bytes()),
            },
        );
    }

    /// Our contacts changed: tell our home node (when linked).
    pub(super) fn vouch_all(&mut self) {
        if let Some(conn) = self.home_link() {
            self.send_vouches(conn);
        }
    }

    /// One of our own invitations or short codes that our home node holds for us.
    fn home_held(&self, rec: &InviteRecord) -> bool {
        let short = self.cfg.role == Role::Client && rec.token.starts_with("short:");
        rec.owner.is_none() && (short || is_home_code(&rec.code))
    }

    /// A home-node message on the link with `pid`.
    pub(super) fn on_home_msg(&mut self, conn: ConnId, pid: &str, msg: WireMsg, rng: &mut dyn Rng) {
        let peer = match self.store.contact(pid) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => return tracing::warn!("home message ignored: {e}"),
        };
        let result = match msg {
            WireMsg::HomePaired {
                token,
                person,
                profile,
            } if peer.replica => self.on_home_paired(conn, token, person, profile),
            WireMsg::HomeShortCodeMade {
                code,
                expires_at,
                refused,
            } if peer.replica => self.on_short_code_made(code, expires_at, refused),
            _ if !peer.replica_for => Err(format!(
                "{} sent a home-node message but we are not its home node",
                short_id(pid)
            )),
            WireMsg::HomeInvite {
                token,
                expires_at,
                revoked,
            } => self.carry_invite(pid, &token, expires_at, revoked),
            WireMsg::HomePairedAck { token } => self.paired_relayed(pid, &token),
            WireMsg::HomeShortCode { ttl_secs } => {
                self.owner_short_code(conn, pid, ttl_secs, rng);
                Ok(())
            }
            WireMsg::Vouch {
                person,
                profile,
                sig,
            } => self.on_vouch(&peer, person, profile, &sig),
            WireMsg::VouchEnd { ids, sig } => self.on_vouch_end(&peer, &ids, &sig),
            _ => Ok(()),
        };
        if let Err(why) = result {
            tracing::warn!(peer = %short_id(pid), "home-node message refused: {why}");
        }
    }

    /// Our owner hands us an invitation to carry (or revokes one).
    fn carry_invite(
        &mut self,
        owner: &str,
        token: &str,
        expires_at: u64,
        revoked: bool,
    ) -> Result<(), String> {
        // A short code of the owner's was made here: it may only be revoked.
        let short = token.starts_with("short:");
        let token = match short {
            true => token.to_string(),
            false => pairing::parse_token(token).ok_or("not a token")?,
        };
        let old = self.store.invite(&token).map_err(|e| e.to_string())?;
        if let Some(old) = &old {
            if old.owner.as_deref() != Some(owner) {
                return Err("a token of someone else's".into());
            }
        }
        let now = self.now_secs();
        let rec = match old {
            Some(mut r) if revoked && r.status == InviteStatus::Open => {
                r.status = InviteStatus::Revoked { at: now };
                r
            }
            Some(_) => return Ok(()),
            None if revoked || short => return Ok(()),
            None => InviteRecord {
                token,
                code: String::new(),
                created_at: now,
                expires_at: expires_at.min(now + crate::domain::invitation::MAX_INVITE_TTL_SECS),
                status: InviteStatus::Open,
                attempts: 0,
                owner: Some(owner.to_string()),
                relayed: false,
            },
        };
        self.store.put_invite(&rec).map_err(|e| e.to_string())
    }

    /// Our owner stored the pairing of `token`: no need to hand it over again.
    fn paired_relayed(&mut self, owner: &str, token: &str) -> Result<(), String> {
        let Some(mut rec) = self.store.invite(token).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        if rec.owner.as_deref() == Some(owner) && !rec.relayed {
            rec.relayed = true;
            self.store.put_invite(&rec).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The offer a home node makes for `owner`: its Person and its newest profile.
    pub(super) fn owner_offer(&self, owner: &str) -> Result<(Person, Profile), String> {
        let c = self
            .store
            .contact(owner)
            .map_err(|e| e.to_string())?
            .ok_or("the person who made this invitation is no longer this node's owner")?;
        let profile = c.profile.ok_or(
            "this node has not received its owner's profile yet; ask again once the owner has connected to it",
        )?;
        Ok((c.person, profile))
    }

    /// Our home node made a pairing with one of our invitations: store the contact as if
    /// we had paired ourselves, and tell the node.
    fn on_home_paired(
        &mut self,
        conn: ConnId,
        token: String,
        person: Person,
        profile: Profile,
    ) -> Result<(), String> {
        let ack = WireMsg::HomePairedAck {
            token: token.clone(),
        };
        profile.verify(&person).map_err(|e| e.to_string())?;
        let pid = person.id().to_string();
        let Some(rec) = self.store.invite(&token).map_err(|e| e.to_string())? else {
            self.send(conn, ack);
            return Err("a pairing for an invitation we never made".into());
        };
        // The node checked the expiry when it paired; what counts here is that we did not
        // revoke it, and that it paired no one else.
        if let Err(r) = rec.admits(&pid, rec.created_at, Guesses::Count) {
            self.send(conn, ack);
            return Err(format!("the invitation is {:?} here", r));
        }
        let now = self.now_secs();
        let at = now.min(rec.expires_at.saturating_sub(1));
        let via = match token.starts_with("short:") {
            true => Via::ShortCode,
            false => Via::Invite,
        };
        let mut contact = contact_of(&person, None, Some(&profile), (via, false), now);
        if let Ok(Some(old)) = self.store.contact(&pid) {
            contact.added_at = old.added_at;
        }
        let channel = direct_channel(&self.me.person_id(), &pid, &person.name, now);
        self.store
            .commit_pairing(Some(&token), &contact, &channel, at)
            .map_err(|e| e.to_string())?;
        self.send(conn, ack);
        self.manager.set_endpoints(
            &contact.person_id(),
            crate::core::links::dial_targets(&contact),
            self.now,
        );
        self.refresh_homes();
        self.vouch_all();
        tracing::info!(peer = %pid, "paired through our home node");
        self.emit(Event::ContactAdded {
            person_id: pid,
            name: person.name.clone(),
            via,
            verification: crate::domain::identity::verification_string(&self.me.person, &person),
        });
        Ok(())
    }
}

fn is_home_code(code: &str) -> bool {
    matches!(Code::decode(code), Ok(Code::Invite(i)) if i.home.is_some())
}

fn home_invite_msg(rec: &InviteRecord) -> WireMsg {
    WireMsg::HomeInvite {
        token: rec.token.clone(),
        expires_at: rec.expires_at,
        revoked: matches!(rec.status, InviteStatus::Revoked { .. }),
    }
}

impl NodeCore {
    /// Our owner vouches for one of its contacts: it may reach the owner's channels here.
    fn on_vouch(
        &mut self,
        owner: &Contact,
        person: Person,
        profile: Option<Profile>,
        sig: &str,
    ) -> Result<(), String> {
        let key = owner.person.verifying_key().map_err(|e| e.to_string())?;
        verify_hex_sig(
            &key,
            &vouch_signed_bytes(&person, profile.as_ref()),
            sig,
            "vouch",
        )
        .map_err(|e| e.to_string())?;
        let profile = profile.filter(|p| p.verify(&person).is_ok());
        let pid = person.id().to_string();
        let oid = owner.person_id().to_string();
        self.vouch_round
            .entry(oid.clone())
            .or_default()
            .insert(pid.clone());
        if pid == self.me.person_id() {
            return Ok(());
        }
        let now = self.now_secs();
        let mut c = match self.store.contact(&pid).map_err(|e| e.to_string())? {
            Some(c) => c,
            None => {
                let c = contact_of(&person, None, profile.as_ref(), (Via::Vouched, false), now);
                tracing::info!(peer = %short_id(&pid), owner = %short_id(&oid), "vouched contact added");
                c
            }
        };
        if !c.vouched_by.contains(&oid) {
            c.vouched_by.push(oid);
        }
        let newer = profile.filter(|p| c.profile.as_ref().is_none_or(|o| o.version < p.version));
        if let Some(p) = newer {
            if c.endpoints != p.endpoints {
                c.set_endpoints(p.endpoints.clone(), EndpointSource::Profile, now);
            }
            c.profile = Some(p);
        }
        self.store.put_contact(&c).map_err(|e| e.to_string())?;
        let targets = crate::core::links::dial_targets(&c);
        self.manager.set_endpoints(&pid, targets, self.now);
        Ok(())
    }

    /// The round of vouches is complete: whoever the owner no longer lists loses access.
    fn on_vouch_end(&mut self, owner: &Contact, ids: &str, sig: &str) -> Result<(), String> {
        let oid = owner.person_id().to_string();
        let round = self.vouch_round.remove(&oid).unwrap_or_default();
        let key = owner.person.verifying_key().map_err(|e| e.to_string())?;
        verify_hex_sig(&key, &vouch_end_signed_bytes(ids), sig, "vouch_end")
            .map_err(|e| e.to_string())?;
        if vouch_ids_hash(round.iter().map(String::as_str)) != ids {
            return Err("the round of vouches does not match its end".into());
        }
        let contacts = self.store.contacts().map_err(|e| e.to_string())?;
        for mut c in contacts {
            let pid = c.person_id().to_string();
            if !c.vouched_by.contains(&oid) || round.contains(&pid) {
                continue;
            }
            c.vouched_by.retain(|o| *o != oid);
            if c.vouched_by.is_empty() && c.via == Via::Vouched {
                self.store.remove_contact(&pid).map_err(|e| e.to_string())?;
                self.manager.remove(&pid);
                if let Some(conn) = self.links.get(pid.as_str()).map(|s| s.conn) {
                    let why = "the person whose home node this is removed you from their contacts";
                    self.close(conn, CloseCode::NotAContact, why);
                }
                tracing::info!(peer = %short_id(&pid), "vouched contact removed by its owner");
            } else {
                self.store.put_contact(&c).map_err(|e| e.to_string())?;
            }
        }
        self.refresh_homes();
        Ok(())
    }
}

/// The endpoints a contact lists as its own (a client's list also names its home node's).
pub(super) fn own_endpoints(c: &Contact) -> Vec<&crate::domain::Endpoint> {
    let pid = c.person_id();
    c.endpoints.iter().filter(|e| e.person_id == pid).collect()
}
