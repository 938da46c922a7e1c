//! The only mutation of the UI state, [`update`]: an action in (input, a runtime event, an
//! answer), the state changed, effects out for the shell to run.

use crate::app::runtime::Event;
use crate::app::runtime::{CodeReach, NewInvite};
use crate::domain::identity::short_id;
use crate::ui::keys;
use crate::ui::state::{
    trim_window, AcceptStatus, Action, Effect, Focus, Popup, State, CONTACTS_EVERY_SECS,
    NOTICE_SECS, REUSE_MIN_SECS, WINDOW_MESSAGES,
};

/// The only mutation of [`State`].
pub fn update(s: &mut State, action: Action) -> Vec<Effect> {
    match action {
        Action::Tick(now) => {
            s.now = now;
            if s.notice.as_ref().is_some_and(|(_, until)| now >= *until) {
                s.notice = None;
            }
            let mut fx = vec![];
            // Dial failures and refusals come with no event: the contacts are reloaded
            // every few seconds as well.
            if std::mem::take(&mut s.contacts_stale) || now >= s.contacts_at + CONTACTS_EVERY_SECS {
                s.contacts_at = now;
                fx.push(Effect::RefreshContacts);
            }
            if std::mem::take(&mut s.read_dirty) {
                if let Some(ch) = s.channel_id() {
                    fx.push(Effect::MarkRead(ch.to_string()));
                }
            }
            // The open network view follows the dialer: states, retries, new addresses.
            if matches!(s.popup, Some(Popup::Network { .. })) {
                fx.push(Effect::LoadNetwork);
            }
            fx
        }
        Action::Resize(w, h) => {
            s.size = (w, h);
            vec![]
        }
        Action::Key(code, mods) => keys::on_key(s, code, mods),
        Action::Paste(text) => {
            keys::on_paste(s, &text);
            vec![]
        }
        Action::Mouse(kind, col, row) => keys::on_mouse(s, kind, col, row),
        Action::Runtime(e) => on_runtime(s, e),
        Action::Contacts(_)
        | Action::Channels(_)
        | Action::History(..)
        | Action::Older(..)
        | Action::Sent(_)
        | Action::Invites(_) => on_loaded(s, action),
        other => on_outcome(s, other),
    }
}

/// What the runtime answered to a query.
fn on_loaded(s: &mut State, action: Action) -> Vec<Effect> {
    match action {
        Action::Contacts(c) => {
            s.contacts = c;
            s.contact_sel = s.contact_sel.min(s.contacts.len().saturating_sub(1));
            vec![]
        }
        Action::Channels(c) => {
            let had = s.channel_id().map(str::to_string);
            s.channels = c;
            if let Some(pos) = s
                .open_next
                .as_ref()
                .and_then(|id| s.channels.iter().position(|(c, _)| &c.id == id))
            {
                s.open_next = None;
                s.focus = Focus::Composer;
                return s.select_channel(pos);
            }
            if had.is_none() && !s.channels.is_empty() && s.popup.is_none() {
                // The first channel: ready to write.
                s.focus = Focus::Composer;
            }
            let idx = had
                .as_ref()
                .and_then(|h| s.channels.iter().position(|(c, _)| &c.id == h))
                .unwrap_or(0);
            if had.is_none()
                || s.channels
                    .get(idx)
                    .map(|(c, _)| Some(&c.id) != had.as_ref())
                    .unwrap_or(false)
            {
                return s.select_channel(idx);
            }
            s.channel_sel = idx;
            vec![]
        }
        Action::History(ch, msgs) => {
            if s.channel_id() == Some(ch.as_str()) {
                s.messages = msgs;
                if let Some((_, unread)) = s.channels.get_mut(s.channel_sel) {
                    *unread = 0;
                }
            }
            vec![]
        }
        Action::Older(ch, mut msgs) => {
            if s.channel_id() == Some(ch.as_str()) && !msgs.is_empty() {
                msgs.append(&mut s.messages);
                s.messages = msgs;
                // Keep memory bounded: drop the newest beyond the window when far up.
                if s.messages.len() > WINDOW_MESSAGES * 4 {
                    s.messages.truncate(WINDOW_MESSAGES * 4);
                }
            }
            vec![]
        }
        Action::Sent(m) => {
            if s.channel_id() == Some(m.channel.as_str()) {
                if !s.delivered_recent.contains(&m.entry) {
                    s.pending.push(m.entry.clone());
                }
                s.messages.push(m);
                trim_window(s);
            }
            vec![]
        }
        Action::Invites(rows) => {
            s.invites = rows;
            s.invite_sel = s.invite_sel.min(s.open_invites().len().saturating_sub(1));
            if !matches!(s.popup, Some(Popup::Pairing(None))) {
                return vec![];
            }
            // `p` shows the freshest open invitation again rather than piling up codes.
            let reuse = s
                .open_invites()
                .into_iter()
                .filter(|r| r.code.starts_with("LAMA1") && r.expires_at > s.now + REUSE_MIN_SECS)
                .max_by_key(|r| r.expires_at)
                .map(|r| NewInvite {
                    code: r.code.clone(),
                    expires_at: r.expires_at,
                    reach: CodeReach::of_code(&r.code),
                    url: None,
                });
            match reuse {
                Some(inv) => {
                    s.popup = Some(Popup::Pairing(Some(inv)));
                    vec![]
                }
                None => vec![Effect::CreateInvite],
            }
        }
        _ => vec![],
    }
}

/// What came of a command the user gave.
fn on_outcome(s: &mut State, action: Action) -> Vec<Effect> {
    match action {
        Action::Invite(inv) => {
            s.popup = Some(Popup::Pairing(Some(inv)));
            vec![Effect::LoadInvites]
        }
        Action::Network(v) => {
            s.network = Some(*v);
            vec![]
        }
        Action::ShortCode(c) => {
            s.short_code = Some(c);
            vec![]
        }
        Action::Accepted(r) => {
            if let Some(Popup::Accept { status, .. }) = &mut s.popup {
                match r {
                    // Done: the dialog gives way to who paired and what to compare, as
                    // on the node's side.
                    Ok(p) => {
                        s.popup = Some(Popup::Paired {
                            name: p.name,
                            verification: p.verification,
                        })
                    }
                    Err(e) => *status = AcceptStatus::Failed(e),
                }
            }
            vec![Effect::RefreshContacts, Effect::RefreshChannels]
        }
        Action::Failed(e) => {
            match &mut s.popup {
                Some(Popup::Accept { status, .. }) => *status = AcceptStatus::Failed(e.clone()),
                Some(Popup::Card { status, .. }) => *status = Some(e.clone()),
                _ => {}
            }
            s.last_error = Some(e.clone());
            s.log(format!("error: {e}"));
            vec![]
        }
        Action::CardAdded(r) => {
            match r {
                Ok(p) => {
                    s.popup = None;
                    s.log(format!(
                        "contact {} added from a card; verification {}",
                        p.name, p.verification
                    ));
                }
                Err(e) => {
                    if let Some(Popup::Card { status, .. }) = &mut s.popup {
                        *status = Some(e);
                    }
                }
            }
            vec![Effect::RefreshContacts, Effect::RefreshChannels]
        }
        Action::Removed(pid) => {
            s.log(format!("contact {} removed", short_id(&pid)));
            vec![Effect::RefreshContacts]
        }
        Action::GroupCreated(id) => {
            s.log(format!("channel {} created", short_id(&id)));
            s.open_next = Some(id);
            vec![Effect::RefreshChannels]
        }
        Action::Copied(how) => {
            s.log(format!("code copied ({how})"));
            let note = if how.contains("OSC 52") {
                // Nothing confirms an OSC 52 copy (tmux drops it unless set-clipboard is
                // on): say so, and where the text is.
                format!("copied through the terminal ({how}); if it does not paste, select the code on screen")
            } else {
                format!("copied to the {how}")
            };
            s.notice = Some((note, s.now + NOTICE_SECS));
            vec![]
        }
        _ => vec![],
    }
}

fn on_runtime(s: &mut State, e: Event) -> Vec<Effect> {
    let mut fx = vec![];
    match &e {
        Event::Message(m) => {
            if s.channel_id() == Some(m.channel.as_str()) {
                s.messages.push(m.clone());
                if s.scroll > 0 {
                    s.new_below += 1;
                }
                // Shown, so read: said to the store on the next tick, not per message.
                s.read_dirty = true;
                trim_window(s);
            } else if let Some((_, unread)) = s.channels.iter_mut().find(|(c, _)| c.id == m.channel)
            {
                *unread += 1;
            } else {
                fx.push(Effect::RefreshChannels);
            }
            return fx;
        }
        Event::Connected { person_id, name } => {
            s.log(format!("connected to {name} ({})", short_id(person_id)));
        }
        Event::Disconnected { person_id, reason } => {
            s.synced.retain(|p| p != person_id);
            s.log(format!(
                "disconnected from {}: {reason}",
                short_id(person_id)
            ));
        }
        Event::ContactAdded {
            name,
            person_id,
            verification,
            ..
        } => {
            s.log(format!(
                "new contact {name} ({}), verification {verification}",
                short_id(person_id)
            ));
            // Our code was used: the pairing screen gives way to who it was and what to
            // compare (the accepting side shows the same in its dialog).
            if matches!(s.popup, Some(Popup::Pairing(_))) {
                s.popup = Some(Popup::Paired {
                    name: name.clone(),
                    verification: verification.clone(),
                });
                fx.push(Effect::LoadInvites);
            }
            fx.push(Effect::RefreshChannels);
        }
        Event::EndpointsChanged { person_id, urls } => {
            s.log(format!(
                "{} now at {}",
                short_id(person_id),
                urls.join(", ")
            ));
        }
        Event::ChannelUpdated { .. } => {
            fx.push(Effect::RefreshChannels);
            return fx;
        }
        Event::Synced { person_id } => {
            if !s.synced.contains(person_id) {
                s.synced.push(person_id.clone());
            }
        }
        Event::Delivered { entries } => {
            s.pending.retain(|p| !entries.contains(p));
            s.delivered_recent.extend(entries.iter().cloned());
            let n = s.delivered_recent.len();
            if n > 256 {
                s.delivered_recent.drain(..n - 256);
            }
            // "N behind" is read with the contacts: reload them on the next tick (acks
            // come in bursts; one reload a second is enough).
            s.contacts_stale = true;
            return vec![];
        }
        Event::Error { message, .. } => {
            s.last_error = Some(message.clone());
            s.log(format!("error: {message}"));
        }
    }
    fx.push(Effect::RefreshContacts);
    fx
}
