//! Input: what each key does on the main screen, in the composer and in each popup, what
//! a paste and the mouse do. Pure, like the rest of the state: input in, effects out.

use crossterm::event::{KeyCode, KeyModifiers, MouseEventKind};

use crate::app::runtime::NewInvite;
use crate::domain::Code;
use crate::ui::state::{
    check_code, scroll_up, AcceptStatus, Effect, Focus, InputCheck, Popup, State, REUSE_MIN_SECS,
    SENT_HISTORY, SIDE_WIDTH,
};

pub(super) fn on_key(s: &mut State, code: KeyCode, mods: KeyModifiers) -> Vec<Effect> {
    let ctrl = mods.contains(KeyModifiers::CONTROL);
    if ctrl && code == KeyCode::Char('c') {
        s.quit = true;
        return vec![];
    }
    if let Some(popup) = s.popup.clone() {
        return on_popup_key(s, popup, code, mods);
    }
    // With no channel open there is nothing to write: keys start actions.
    if s.focus == Focus::Composer && !s.channels.is_empty() {
        return on_composer_key(s, code, mods);
    }
    main_key(s, code)
}

/// A key on the main screen (no popup, composer not focused).
fn main_key(s: &mut State, code: KeyCode) -> Vec<Effect> {
    // Bound keys stand for the built-in key of their action; any other key navigates.
    let action = match code {
        KeyCode::Char(c) => match s.prefs.keys.action_key(c) {
            Some(builtin) => KeyCode::Char(builtin),
            None => return navigate(s, code),
        },
        other => other,
    };
    match action {
        KeyCode::Char('q') => s.quit = true,
        KeyCode::Char('?') => s.popup = Some(Popup::Help),
        KeyCode::Tab => s.focus = s.focus.next(),
        KeyCode::BackTab => s.focus = s.focus.prev(),
        KeyCode::Char('p')
            if s.me.endpoint.is_none() && !s.contacts.iter().any(|c| c.contact.replica) =>
        {
            s.last_error = Some(format!(
                "this client has no home node to carry its invitations (a client never listens): start it with --provision-node, or ask your contact for a code and press {}",
                s.prefs.keys.key("accept")
            ));
        }
        KeyCode::Char('p') => {
            // One current code: an open one is shown again (the list decides, see
            // `update`); a new one only when none is left. A client's codes are carried by
            // its home node, which also makes its short codes (when it is connected).
            s.popup = Some(Popup::Pairing(None));
            let mut fx = vec![Effect::LoadInvites];
            let has_home = s.contacts.iter().any(|c| c.contact.replica);
            if (s.me.endpoint.is_some() || has_home)
                && s.short_code
                    .as_ref()
                    .is_none_or(|c| c.expires_at <= s.now + REUSE_MIN_SECS)
            {
                s.short_code = None;
                fx.push(Effect::CreateShortCode);
            }
            return fx;
        }
        KeyCode::Char('e') => return vec![Effect::CopyCard],
        KeyCode::Char('c') => {
            s.field_cursor = None;
            s.popup = Some(Popup::Card {
                input: String::new(),
                status: None,
            })
        }
        KeyCode::Char('d') if s.focus == Focus::Contacts => {
            if let Some(c) = s.contacts.get(s.contact_sel) {
                s.popup = Some(Popup::ConfirmRemove(
                    c.contact.person_id().to_string(),
                    c.contact.person.name.clone(),
                ));
            }
        }
        KeyCode::Char('g') => {
            s.popup = Some(Popup::NewGroup {
                name: String::new(),
                picked: vec![],
                cursor: 0,
                on_members: false,
            })
        }
        KeyCode::Char('m') if !s.channels.is_empty() => s.popup = Some(Popup::Members),
        KeyCode::Char('a') => {
            s.field_cursor = None;
            s.popup = Some(Popup::Accept {
                input: String::new(),
                status: AcceptStatus::Editing(InputCheck::Empty),
            })
        }
        KeyCode::Char('i') if !s.contacts.is_empty() => s.popup = Some(Popup::ContactInfo),
        KeyCode::Char('n') => {
            s.popup = Some(Popup::Network { scroll: 0 });
            return vec![Effect::LoadNetwork];
        }
        _ => return navigate(s, code),
    }
    vec![]
}

/// Moving through the lists and the messages, and opening what is selected.
fn navigate(s: &mut State, code: KeyCode) -> Vec<Effect> {
    match code {
        KeyCode::Down | KeyCode::Char('j') => match s.focus {
            Focus::Contacts => {
                s.contact_sel = (s.contact_sel + 1).min(s.contacts.len().saturating_sub(1))
            }
            Focus::Channels => return s.select_channel(s.channel_sel + 1),
            Focus::Messages => {
                s.scroll = s.scroll.saturating_sub(1);
                if s.scroll == 0 {
                    s.new_below = 0;
                }
            }
            Focus::Composer => {}
        },
        KeyCode::Up | KeyCode::Char('k') => match s.focus {
            Focus::Contacts => s.contact_sel = s.contact_sel.saturating_sub(1),
            Focus::Channels => return s.select_channel(s.channel_sel.saturating_sub(1)),
            Focus::Messages => return scroll_up(s, 1),
            Focus::Composer => {}
        },
        KeyCode::PageUp => return scroll_up(s, s.page_rows()),
        KeyCode::PageDown => page_down(s),
        KeyCode::End => s.scroll_to_bottom(),
        KeyCode::Enter => match s.focus {
            Focus::Contacts => {
                // Open the 1:1 channel with the selected contact.
                if let Some(c) = s.contacts.get(s.contact_sel) {
                    let pid = c.contact.person_id();
                    if let Some(i) = s.channels.iter().position(|(ch, _)| {
                        ch.members.len() == 2 && ch.members.iter().any(|m| *m == pid)
                    }) {
                        s.focus = Focus::Composer;
                        return s.select_channel(i);
                    }
                }
            }
            Focus::Channels => s.focus = Focus::Composer,
            _ => {}
        },
        _ => {}
    }
    vec![]
}

fn on_composer_key(s: &mut State, code: KeyCode, mods: KeyModifiers) -> Vec<Effect> {
    match code {
        KeyCode::Enter if mods.intersects(KeyModifiers::ALT | KeyModifiers::SHIFT) => {
            s.composer.insert('\n')
        }
        KeyCode::Enter => {
            let text = s.composer.as_str().trim_end().to_string();
            if text.is_empty() {
                return vec![];
            }
            let Some(ch) = s.channel_id().map(str::to_string) else {
                s.last_error =
                    Some("no channel to send to: pair with someone first (p or a)".into());
                return vec![];
            };
            s.composer.clear();
            s.recall = None;
            s.sent_lines.push(text.clone());
            if s.sent_lines.len() > SENT_HISTORY {
                s.sent_lines.remove(0);
            }
            s.scroll_to_bottom();
            return vec![Effect::Send(ch, text)];
        }
        KeyCode::Up if s.composer.is_empty() || s.recall.is_some() => {
            if s.sent_lines.is_empty() {
                return vec![];
            }
            let i = match s.recall {
                None => s.sent_lines.len() - 1,
                Some(i) => i.saturating_sub(1),
            };
            s.recall = Some(i);
            s.composer.set(&s.sent_lines[i]);
        }
        KeyCode::Down if s.recall.is_some() => {
            let i = s.recall.unwrap_or(0) + 1;
            if i >= s.sent_lines.len() {
                s.recall = None;
                s.composer.clear();
            } else {
                s.recall = Some(i);
                s.composer.set(&s.sent_lines[i]);
            }
        }
        KeyCode::Tab => s.focus = s.focus.next(),
        KeyCode::BackTab => s.focus = s.focus.prev(),
        KeyCode::Esc => s.focus = Focus::Channels,
        KeyCode::PageUp => return scroll_up(s, s.page_rows()),
        KeyCode::PageDown => page_down(s),
        // End at the end of the line (or Ctrl-End): back to the newest message.
        KeyCode::End if mods.contains(KeyModifiers::CONTROL) || s.composer.at_line_end() => {
            s.scroll_to_bottom()
        }
        _ => {
            let before = s.composer.as_str().len();
            if s.composer.on_key(code, mods) && s.composer.as_str().len() != before {
                s.recall = None;
            }
        }
    }
    vec![]
}

fn page_down(s: &mut State) {
    s.scroll = s.scroll.saturating_sub(s.page_rows());
    if s.scroll == 0 {
        s.new_below = 0;
    }
}

fn on_popup_key(s: &mut State, popup: Popup, code: KeyCode, mods: KeyModifiers) -> Vec<Effect> {
    if code == KeyCode::Esc {
        s.popup = None;
        return vec![];
    }
    match popup {
        Popup::Pairing(inv) => pairing_key(s, inv, code),
        Popup::Accept { input, status } => accept_key(s, input, status, code, mods),
        Popup::Card { input, .. } => card_key(s, input, code, mods),
        Popup::ConfirmRemove(pid, _) => {
            s.popup = None;
            if code == KeyCode::Char('y') {
                return vec![Effect::RemoveContact(pid)];
            }
            vec![]
        }
        Popup::NewGroup {
            name,
            picked,
            cursor,
            on_members,
        } => group_key(s, (name, picked, cursor, on_members), code),
        Popup::Network { scroll } => {
            let most = crate::ui::netview::line_count(s).saturating_sub(1);
            let scroll = match code {
                KeyCode::Down | KeyCode::Char('j') => scroll.saturating_add(1),
                KeyCode::Up | KeyCode::Char('k') => scroll.saturating_sub(1),
                KeyCode::PageDown => scroll.saturating_add(10),
                KeyCode::PageUp => scroll.saturating_sub(10),
                KeyCode::Home => 0,
                KeyCode::Char('q') | KeyCode::Char('n') | KeyCode::Enter => {
                    s.popup = None;
                    return vec![];
                }
                _ => scroll,
            };
            s.popup = Some(Popup::Network {
                scroll: scroll.min(most),
            });
            vec![]
        }
        Popup::Paired { .. } => {
            if matches!(code, KeyCode::Enter | KeyCode::Char('q')) {
                s.popup = None;
            }
            vec![]
        }
        Popup::Help | Popup::ContactInfo | Popup::Members => {
            if matches!(
                code,
                KeyCode::Char('q') | KeyCode::Char('?') | KeyCode::Enter
            ) {
                s.popup = None;
            }
            vec![]
        }
    }
}

fn pairing_key(s: &mut State, inv: Option<NewInvite>, code: KeyCode) -> Vec<Effect> {
    match code {
        KeyCode::Char('c') => {
            if let Some(i) = inv {
                return vec![Effect::Copy(i.code)];
            }
        }
        KeyCode::Char('n') => {
            return vec![
                Effect::CreateInvite,
                Effect::CreateShortCode,
                Effect::LoadInvites,
            ]
        }
        KeyCode::Up | KeyCode::Char('k') => s.invite_sel = s.invite_sel.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => {
            s.invite_sel = (s.invite_sel + 1).min(s.open_invites().len().saturating_sub(1))
        }
        KeyCode::Char('r') => {
            if let Some(row) = s.open_invites().get(s.invite_sel) {
                let code = row.code.clone();
                // The big code itself revoked: the screen moves on to another one.
                if inv.as_ref().is_some_and(|i| i.code == code) {
                    s.popup = Some(Popup::Pairing(None));
                }
                return vec![Effect::Revoke(code)];
            }
        }
        KeyCode::Char('q') => s.popup = None,
        _ => {}
    }
    vec![]
}

fn accept_key(
    s: &mut State,
    mut input: String,
    status: AcceptStatus,
    code: KeyCode,
    mods: KeyModifiers,
) -> Vec<Effect> {
    if matches!(status, AcceptStatus::Connecting) {
        return vec![];
    }
    if matches!(status, AcceptStatus::Done(_)) {
        if code == KeyCode::Enter {
            s.popup = None;
        }
        return vec![];
    }
    match code {
        KeyCode::Char('v') if mods.contains(KeyModifiers::CONTROL) => {
            return vec![Effect::PasteClipboard]
        }
        KeyCode::Enter => return accept_enter(s, input),
        _ => {
            crate::ui::editor::field_key(&mut input, &mut s.field_cursor, code, mods);
        }
    }
    let err = check_code(&input);
    s.popup = Some(Popup::Accept {
        input,
        status: AcceptStatus::Editing(err),
    });
    vec![]
}

/// Enter in the accept dialog: scan a screenshot path, or send a code that reads right.
fn accept_enter(s: &mut State, input: String) -> Vec<Effect> {
    {
        // A path to a screenshot of the QR code: scan it.
        let t = input.trim();
        if t.starts_with('/') || t.starts_with("~/") || t.starts_with("./") {
            let path = t.to_string();
            s.field_cursor = None;
            s.popup = Some(Popup::Accept {
                input: String::new(),
                status: AcceptStatus::Editing(InputCheck::Empty),
            });
            return vec![Effect::ScanFile(path)];
        }
        let check = check_code(&input);
        if !matches!(check, InputCheck::Invite | InputCheck::Short) {
            s.popup = Some(Popup::Accept {
                input,
                status: AcceptStatus::Editing(check),
            });
            return vec![];
        }
        s.popup = Some(Popup::Accept {
            input: input.clone(),
            status: AcceptStatus::Connecting,
        });
        vec![Effect::Accept(input)]
    }
}

fn card_key(s: &mut State, mut input: String, code: KeyCode, mods: KeyModifiers) -> Vec<Effect> {
    match code {
        KeyCode::Enter => {
            let card = input.trim().to_string();
            return match Code::decode(&card) {
                Ok(Code::Card(_)) => vec![Effect::AddCard(card)],
                Ok(Code::Invite(_)) => {
                    s.popup = Some(Popup::Card {
                        input,
                        status: Some(format!(
                            "that is an invitation, not a card: close this (Esc) and press {} to accept it",
                            s.prefs.keys.key("accept")
                        )),
                    });
                    vec![]
                }
                Err(e) => {
                    s.popup = Some(Popup::Card {
                        input,
                        status: Some(e.to_string()),
                    });
                    vec![]
                }
            };
        }
        _ => {
            if crate::ui::editor::field_key(&mut input, &mut s.field_cursor, code, mods) {
                s.popup = Some(Popup::Card {
                    input,
                    status: None,
                });
            }
        }
    }
    vec![]
}

/// The group dialog: the name field, and the member list (Tab switches).
fn group_key(
    s: &mut State,
    (mut name, mut picked, mut cursor, mut on_members): (String, Vec<String>, usize, bool),
    code: KeyCode,
) -> Vec<Effect> {
    match code {
        KeyCode::Tab | KeyCode::BackTab => on_members = !on_members,
        KeyCode::Enter => {
            if name.trim().is_empty() {
                s.last_error = Some("give the channel a name".into());
            } else {
                s.popup = None;
                return vec![Effect::CreateGroup(name.trim().to_string(), picked)];
            }
        }
        KeyCode::Up if on_members => cursor = cursor.saturating_sub(1),
        KeyCode::Down if on_members => {
            cursor = (cursor + 1).min(s.contacts.len().saturating_sub(1))
        }
        KeyCode::Char(' ') if on_members => {
            if let Some(c) = s.contacts.get(cursor) {
                let pid = c.contact.person_id();
                if let Some(i) = picked.iter().position(|p| *p == pid) {
                    picked.remove(i);
                } else {
                    picked.push(pid.to_string());
                }
            }
        }
        KeyCode::Backspace if !on_members => {
            name.pop();
        }
        KeyCode::Char(c) if !on_members => name.push(c),
        _ => {}
    }
    s.popup = Some(Popup::NewGroup {
        name,
        picked,
        cursor,
        on_members,
    });
    vec![]
}

/// Pasted text goes to the field that has the focus.
pub(super) fn on_paste(s: &mut State, text: &str) {
    match &mut s.popup {
        Some(Popup::Accept { input, status }) => {
            crate::ui::editor::field_paste(input, &mut s.field_cursor, text);
            *status = AcceptStatus::Editing(check_code(input));
        }
        Some(Popup::Card { input, status }) => {
            crate::ui::editor::field_paste(input, &mut s.field_cursor, text);
            *status = None;
        }
        Some(Popup::NewGroup {
            name,
            on_members: false,
            ..
        }) => name.push_str(text.trim()),
        _ => {
            s.recall = None;
            s.composer.paste(text);
        }
    }
}

pub(super) fn on_mouse(s: &mut State, kind: MouseEventKind, col: u16, row: u16) -> Vec<Effect> {
    match kind {
        MouseEventKind::ScrollUp => scroll_up(s, 3),
        MouseEventKind::ScrollDown => {
            s.scroll = s.scroll.saturating_sub(3);
            vec![]
        }
        MouseEventKind::Down(_) if s.popup.is_none() => click(s, col, row),
        _ => vec![],
    }
}

/// Focus and select what was clicked (mirrors the layout in `view`).
fn click(s: &mut State, col: u16, row: u16) -> Vec<Effect> {
    let (_, h) = s.size;
    let body_top = 3u16;
    let body_h = h.saturating_sub(3 + 2);
    if row < body_top || row >= body_top + body_h {
        return vec![];
    }
    if col < SIDE_WIDTH {
        let half = body_h / 2;
        if row < body_top + half {
            s.focus = Focus::Contacts;
            let i = (row - body_top).saturating_sub(1) as usize;
            if i < s.contacts.len() {
                s.contact_sel = i;
            }
        } else {
            s.focus = Focus::Channels;
            let i = (row - body_top - half).saturating_sub(1) as usize;
            if i < s.channels.len() && i != s.channel_sel {
                return s.select_channel(i);
            }
        }
    } else {
        let composer_h = s.composer_height();
        s.focus = if row >= body_top + body_h - composer_h {
            Focus::Composer
        } else {
            Focus::Messages
        };
    }
    vec![]
}
