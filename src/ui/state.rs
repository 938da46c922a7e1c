//! UI state and its only mutation, [`update`]: actions in, effects out. No I/O here, so
//! every screen is reproducible in tests through the same path the app uses.

use crossterm::event::{KeyCode, KeyModifiers, MouseEventKind};

use crate::app::runtime::{ContactView, Event, IdentityInfo, MessageView, NewInvite, Paired};
use crate::domain::identity::short_id;
use crate::domain::Channel;
use crate::domain::ShortCode;
use crate::domain::{Code, CodeError};

/// Width of the side pane.
pub const SIDE_WIDTH: u16 = 30;

/// Messages kept in memory for the open channel (older ones are loaded on scroll).
pub const WINDOW_MESSAGES: usize = 500;
/// Lines of event log kept.
pub const LOG_KEEP: usize = 200;
/// Own sent lines remembered for Up-recall.
pub const SENT_HISTORY: usize = 100;

/// Which pane has the keyboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    /// The contact list.
    Contacts,
    /// The channel list.
    Channels,
    /// The message pane (scrolling).
    Messages,
    /// The composer.
    Composer,
}

impl Focus {
    fn next(self) -> Focus {
        match self {
            Focus::Contacts => Focus::Channels,
            Focus::Channels => Focus::Messages,
            Focus::Messages => Focus::Composer,
            Focus::Composer => Focus::Contacts,
        }
    }
    fn prev(self) -> Focus {
        match self {
            Focus::Contacts => Focus::Composer,
            Focus::Channels => Focus::Contacts,
            Focus::Messages => Focus::Channels,
            Focus::Composer => Focus::Messages,
        }
    }
}

/// The state of the accept dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptStatus {
    /// Typing; the code is checked as typed.
    Editing(InputCheck),
    /// Dialing and pairing.
    Connecting,
    /// Paired.
    Done(Paired),
    /// Failed, with the reason in plain words.
    Failed(String),
}

/// What the accept dialog makes of its input, checked as it is typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputCheck {
    /// Nothing typed yet.
    Empty,
    /// A well-formed invitation code.
    Invite,
    /// A well-formed short code (and maybe the node's address after it).
    Short,
    /// Not usable, and why.
    Bad(String),
}

/// A popup over the main screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Popup {
    /// Key bindings.
    Help,
    /// The node's invitation: QR and code.
    Pairing(Option<NewInvite>),
    /// Paste or type a code.
    Accept {
        /// The text typed so far.
        input: String,
        /// Progress.
        status: AcceptStatus,
    },
    /// Details of the selected contact.
    ContactInfo,
    /// Import a contact card.
    Card {
        /// Text typed or pasted.
        input: String,
        /// Problem or progress, in plain words.
        status: Option<String>,
    },
    /// Confirm removing a contact: (person id, name).
    ConfirmRemove(String, String),
    /// Create a group channel.
    NewGroup {
        /// Channel name.
        name: String,
        /// Picked member ids.
        picked: Vec<String>,
        /// Cursor in the contact list.
        cursor: usize,
        /// Keyboard in the member list (else in the name field).
        on_members: bool,
    },
    /// Members of the selected channel.
    Members,
}

/// An invitation as listed on the pairing screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteRow {
    /// The code.
    pub code: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// `open`, `used`, `revoked`, `expired`.
    pub status: String,
}

/// Everything the screen shows.
#[derive(Clone, Debug)]
pub struct State {
    /// Who we are.
    pub me: IdentityInfo,
    /// Contacts with live state.
    pub contacts: Vec<ContactView>,
    /// Channels with unread counts.
    pub channels: Vec<(Channel, u64)>,
    /// Selected contact.
    pub contact_sel: usize,
    /// Selected channel.
    pub channel_sel: usize,
    /// Loaded messages of the selected channel (a window of the history).
    pub messages: Vec<MessageView>,
    /// Lines scrolled up from the bottom.
    pub scroll: usize,
    /// Entries sent by us that no peer has confirmed yet (shown with a marker).
    pub pending: Vec<String>,
    /// Entries confirmed before their `Sent` arrived (the two race).
    pub delivered_recent: Vec<String>,
    /// Composer text.
    pub composer: String,
    /// Own sent lines, newest last.
    pub sent_lines: Vec<String>,
    /// Position in `sent_lines` while recalling.
    pub recall: Option<usize>,
    /// Focus.
    pub focus: Focus,
    /// Popup.
    pub popup: Option<Popup>,
    /// Event log lines.
    pub log: Vec<String>,
    /// Last error in plain words.
    pub last_error: Option<String>,
    /// Peers caught up (person ids).
    pub synced: Vec<String>,
    /// Invitations (pairing screen).
    pub invites: Vec<InviteRow>,
    /// The short code shown beside the QR on the pairing screen.
    pub short_code: Option<NewInvite>,
    /// Selected invitation.
    pub invite_sel: usize,
    /// Terminal size (columns, rows), for mouse hit-testing.
    pub size: (u16, u16),
    /// Wall clock, unix seconds (for countdowns).
    pub now: u64,
    /// The user asked to quit.
    pub quit: bool,
}

/// Inputs to [`update`].
#[derive(Clone, Debug)]
pub enum Action {
    /// A key.
    Key(KeyCode, KeyModifiers),
    /// Bracketed paste.
    Paste(String),
    /// Mouse wheel or click at (column, row).
    Mouse(MouseEventKind, u16, u16),
    /// A second passed.
    Tick(u64),
    /// The terminal was resized.
    Resize(u16, u16),
    /// Something from the runtime.
    Runtime(Event),
    /// Fresh contacts.
    Contacts(Vec<ContactView>),
    /// Fresh channels.
    Channels(Vec<(Channel, u64)>),
    /// Loaded history of a channel (replaces the window).
    History(String, Vec<MessageView>),
    /// Older messages of a channel (prepended).
    Older(String, Vec<MessageView>),
    /// Our own message is durable.
    Sent(MessageView),
    /// A fresh invitation.
    Invite(NewInvite),
    /// A fresh short code (node).
    ShortCode(NewInvite),
    /// Result of accepting.
    Accepted(Result<Paired, String>),
    /// A command failed.
    Failed(String),
    /// The clipboard was written (how).
    Copied(String),
    /// Invitations.
    Invites(Vec<InviteRow>),
    /// Result of importing a card.
    CardAdded(Result<Paired, String>),
    /// A contact was removed.
    Removed(String),
    /// A group channel was created.
    GroupCreated(String),
}

/// Side effects for the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Reload contacts.
    RefreshContacts,
    /// Reload channels.
    RefreshChannels,
    /// Load the last messages of a channel.
    LoadHistory(String),
    /// Load messages older than the first loaded one.
    LoadOlder(String, MessageView),
    /// Write a message.
    Send(String, String),
    /// Create an invitation.
    CreateInvite,
    /// Create a short code.
    CreateShortCode,
    /// Accept a code.
    Accept(String),
    /// Put text on the clipboard.
    Copy(String),
    /// Read the clipboard (text, or an image of a QR code) into the accept dialog.
    PasteClipboard,
    /// Read a QR code from an image file into the accept dialog.
    ScanFile(String),
    /// Load the invitations.
    LoadInvites,
    /// Revoke an invitation.
    Revoke(String),
    /// Copy our contact card.
    CopyCard,
    /// Import a card.
    AddCard(String),
    /// Remove a contact.
    RemoveContact(String),
    /// Create a group channel.
    CreateGroup(String, Vec<String>),
}

impl State {
    /// The initial state.
    pub fn new(me: IdentityInfo, now: u64) -> Self {
        State {
            me,
            contacts: vec![],
            channels: vec![],
            contact_sel: 0,
            channel_sel: 0,
            messages: vec![],
            scroll: 0,
            pending: vec![],
            delivered_recent: vec![],
            composer: String::new(),
            sent_lines: vec![],
            recall: None,
            focus: Focus::Composer,
            popup: None,
            log: vec![],
            last_error: None,
            synced: vec![],
            invites: vec![],
            short_code: None,
            invite_sel: 0,
            size: (100, 30),
            now,
            quit: false,
        }
    }

    /// The selected channel's id.
    pub fn channel_id(&self) -> Option<&str> {
        self.channels
            .get(self.channel_sel)
            .map(|(c, _)| c.id.as_str())
    }

    /// A display name for a channel.
    pub fn channel_name(&self, c: &Channel) -> String {
        if !c.name.is_empty() {
            return c.name.clone();
        }
        let other = c.members.iter().find(|m| **m != self.me.person_id);
        other
            .and_then(|o| self.contacts.iter().find(|v| v.contact.person_id() == *o))
            .map(|v| v.contact.person.name.clone())
            .unwrap_or_else(|| short_id(&c.id).to_string())
    }

    fn log(&mut self, line: String) {
        self.log.push(line);
        if self.log.len() > LOG_KEEP {
            self.log.remove(0);
        }
    }

    fn select_channel(&mut self, i: usize) -> Vec<Effect> {
        if self.channels.is_empty() {
            return vec![];
        }
        self.channel_sel = i.min(self.channels.len() - 1);
        self.scroll = 0;
        self.messages.clear();
        match self.channel_id() {
            Some(id) => vec![Effect::LoadHistory(id.to_string())],
            None => vec![],
        }
    }
}

/// Hints for the status bar, by focus.
pub fn key_hints(s: &State) -> &'static str {
    match (&s.popup, s.focus) {
        (Some(Popup::Pairing(_)), _) => {
            "c copy code · n new invite · ↑↓ pick · r revoke · Esc close"
        }
        (Some(Popup::NewGroup { .. }), _) => {
            "type a name · Tab members · Space pick · Enter create · Esc"
        }
        (Some(Popup::ConfirmRemove(..)), _) => "y remove · any other key keeps the contact",
        (Some(Popup::Card { .. }), _) => "paste the other side's card · Enter import · Esc close",
        (Some(Popup::Accept { .. }), _) => {
            "paste or type the code · Ctrl-V clipboard · Enter pair · Esc close"
        }
        (Some(_), _) => "Esc close",
        (None, Focus::Composer) => {
            "Enter send · Alt-Enter newline · Up recall · Tab focus · Ctrl-C quit"
        }
        (None, Focus::Messages) => "↑↓/j k scroll · PgUp older · Tab focus · ? help · q quit",
        (None, _) => {
            "↑↓ move · Enter open · p pair · a accept · g group · i info · ? help · q quit"
        }
    }
}

/// The only mutation of [`State`].
pub fn update(s: &mut State, action: Action) -> Vec<Effect> {
    match action {
        Action::Tick(now) => {
            s.now = now;
            vec![]
        }
        Action::Resize(w, h) => {
            s.size = (w, h);
            vec![]
        }
        Action::Key(code, mods) => on_key(s, code, mods),
        Action::Paste(text) => {
            match &mut s.popup {
                Some(Popup::Accept { input, status }) => {
                    input.push_str(text.trim());
                    *status = AcceptStatus::Editing(check_code(input));
                }
                Some(Popup::Card { input, status }) => {
                    input.push_str(text.trim());
                    *status = None;
                }
                Some(Popup::NewGroup {
                    name,
                    on_members: false,
                    ..
                }) => name.push_str(text.trim()),
                _ => s.composer.push_str(&text),
            }
            vec![]
        }
        Action::Mouse(kind, _col, row) => match kind {
            MouseEventKind::ScrollUp => scroll_up(s, 3),
            MouseEventKind::ScrollDown => {
                s.scroll = s.scroll.saturating_sub(3);
                vec![]
            }
            MouseEventKind::Down(_) if s.popup.is_none() => click(s, _col, row),
            _ => vec![],
        },
        Action::Runtime(e) => on_runtime(s, e),
        Action::Contacts(c) => {
            s.contacts = c;
            s.contact_sel = s.contact_sel.min(s.contacts.len().saturating_sub(1));
            vec![]
        }
        Action::Channels(c) => {
            let had = s.channel_id().map(str::to_string);
            s.channels = c;
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
        Action::Invite(inv) => {
            s.popup = Some(Popup::Pairing(Some(inv)));
            vec![]
        }
        Action::ShortCode(c) => {
            s.short_code = Some(c);
            vec![]
        }
        Action::Accepted(r) => {
            if let Some(Popup::Accept { status, .. }) = &mut s.popup {
                *status = match r {
                    Ok(p) => AcceptStatus::Done(p),
                    Err(e) => AcceptStatus::Failed(e),
                };
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
        Action::Invites(rows) => {
            s.invites = rows;
            s.invite_sel = s.invite_sel.min(s.invites.len().saturating_sub(1));
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
            vec![Effect::RefreshChannels]
        }
        Action::Copied(how) => {
            s.log(format!("code copied ({how})"));
            vec![]
        }
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
        let composer_h = (s.composer.lines().count().max(1) as u16 + 2).min(6);
        s.focus = if row >= body_top + body_h - composer_h {
            Focus::Composer
        } else {
            Focus::Messages
        };
    }
    vec![]
}

fn trim_window(s: &mut State) {
    if s.messages.len() > WINDOW_MESSAGES && s.scroll == 0 {
        let drop = s.messages.len() - WINDOW_MESSAGES;
        s.messages.drain(..drop);
    }
}

fn scroll_up(s: &mut State, n: usize) -> Vec<Effect> {
    s.scroll += n;
    // Near the top of what is loaded: fetch older messages.
    if s.scroll + 20 >= s.messages.len() {
        if let (Some(ch), Some(first)) = (s.channel_id(), s.messages.first()) {
            return vec![Effect::LoadOlder(ch.to_string(), first.clone())];
        }
    }
    vec![]
}

/// Check a code as typed: `None` when it decodes as an invitation.
pub fn check_code(input: &str) -> InputCheck {
    if input.trim().is_empty() {
        return InputCheck::Empty;
    }
    if input.trim_start().starts_with(['/', '~', '.']) {
        return InputCheck::Bad("an image path: press Enter to scan it".into());
    }
    if ShortCode::looks_like(input) {
        let (code, _) = split_short(input);
        return match ShortCode::parse(&code) {
            Ok(_) => InputCheck::Short,
            Err(e) => InputCheck::Bad(e.to_string()),
        };
    }
    match Code::decode(input) {
        Ok(Code::Invite(_)) => InputCheck::Invite,
        Ok(Code::Card(_)) => {
            InputCheck::Bad(CodeError::Malformed("a contact card, not an invitation").to_string())
        }
        Err(e) => InputCheck::Bad(e.to_string()),
    }
}

/// A short code as typed, and the node's address when one follows it
/// (`7-lunar-pepper-canal ws://host:8765`).
pub fn split_short(input: &str) -> (String, Option<String>) {
    let t = input.trim();
    match t.rsplit_once(char::is_whitespace) {
        Some((code, url)) if url.starts_with("ws://") || url.starts_with("wss://") => {
            (code.trim().to_string(), Some(url.to_string()))
        }
        _ => (t.to_string(), None),
    }
}

fn on_runtime(s: &mut State, e: Event) -> Vec<Effect> {
    let mut fx = vec![];
    match &e {
        Event::Message(m) => {
            if s.channel_id() == Some(m.channel.as_str()) {
                s.messages.push(m.clone());
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
            fx.push(Effect::RefreshChannels);
        }
        Event::EndpointsChanged { person_id, urls } => {
            s.log(format!(
                "{} now at {}",
                short_id(person_id),
                urls.join(", ")
            ));
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

fn on_key(s: &mut State, code: KeyCode, mods: KeyModifiers) -> Vec<Effect> {
    let ctrl = mods.contains(KeyModifiers::CONTROL);
    if ctrl && code == KeyCode::Char('c') {
        s.quit = true;
        return vec![];
    }
    if let Some(popup) = s.popup.clone() {
        return on_popup_key(s, popup, code, mods);
    }
    if s.focus == Focus::Composer {
        return on_composer_key(s, code, mods);
    }
    match code {
        KeyCode::Char('q') => s.quit = true,
        KeyCode::Char('?') => s.popup = Some(Popup::Help),
        KeyCode::Tab => s.focus = s.focus.next(),
        KeyCode::BackTab => s.focus = s.focus.prev(),
        KeyCode::Char('p') if s.me.endpoint.is_some() => {
            s.popup = Some(Popup::Pairing(None));
            s.short_code = None;
            return vec![
                Effect::CreateInvite,
                Effect::CreateShortCode,
                Effect::LoadInvites,
            ];
        }
        KeyCode::Char('e') => return vec![Effect::CopyCard],
        KeyCode::Char('c') => {
            s.popup = Some(Popup::Card {
                input: String::new(),
                status: None,
            })
        }
        KeyCode::Char('d') if s.focus == Focus::Contacts => {
            if let Some(c) = s.contacts.get(s.contact_sel) {
                s.popup = Some(Popup::ConfirmRemove(
                    c.contact.person_id(),
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
            s.popup = Some(Popup::Accept {
                input: String::new(),
                status: AcceptStatus::Editing(InputCheck::Empty),
            })
        }
        KeyCode::Char('i') if !s.contacts.is_empty() => s.popup = Some(Popup::ContactInfo),
        KeyCode::Down | KeyCode::Char('j') => match s.focus {
            Focus::Contacts => {
                s.contact_sel = (s.contact_sel + 1).min(s.contacts.len().saturating_sub(1))
            }
            Focus::Channels => return s.select_channel(s.channel_sel + 1),
            Focus::Messages => s.scroll = s.scroll.saturating_sub(1),
            Focus::Composer => {}
        },
        KeyCode::Up | KeyCode::Char('k') => match s.focus {
            Focus::Contacts => s.contact_sel = s.contact_sel.saturating_sub(1),
            Focus::Channels => return s.select_channel(s.channel_sel.saturating_sub(1)),
            Focus::Messages => return scroll_up(s, 1),
            Focus::Composer => {}
        },
        KeyCode::PageUp => return scroll_up(s, 10),
        KeyCode::PageDown => s.scroll = s.scroll.saturating_sub(10),
        KeyCode::Enter => match s.focus {
            Focus::Contacts => {
                // Open the 1:1 channel with the selected contact.
                if let Some(c) = s.contacts.get(s.contact_sel) {
                    let pid = c.contact.person_id();
                    if let Some(i) = s
                        .channels
                        .iter()
                        .position(|(ch, _)| ch.members.len() == 2 && ch.members.contains(&pid))
                    {
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
            s.composer.push('\n')
        }
        KeyCode::Enter => {
            let text = s.composer.trim_end().to_string();
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
            s.scroll = 0;
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
            s.composer = s.sent_lines[i].clone();
        }
        KeyCode::Down if s.recall.is_some() => {
            let i = s.recall.unwrap_or(0) + 1;
            if i >= s.sent_lines.len() {
                s.recall = None;
                s.composer.clear();
            } else {
                s.recall = Some(i);
                s.composer = s.sent_lines[i].clone();
            }
        }
        KeyCode::Backspace => {
            s.composer.pop();
        }
        KeyCode::Tab => s.focus = s.focus.next(),
        KeyCode::BackTab => s.focus = s.focus.prev(),
        KeyCode::Esc => s.focus = Focus::Channels,
        KeyCode::PageUp => return scroll_up(s, 10),
        KeyCode::PageDown => s.scroll = s.scroll.saturating_sub(10),
        KeyCode::Char(c) => {
            s.recall = None;
            s.composer.push(c);
        }
        _ => {}
    }
    vec![]
}

fn on_popup_key(s: &mut State, popup: Popup, code: KeyCode, mods: KeyModifiers) -> Vec<Effect> {
    if code == KeyCode::Esc {
        s.popup = None;
        return vec![];
    }
    match popup {
        Popup::Pairing(inv) => match code {
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
                s.invite_sel = (s.invite_sel + 1).min(s.invites.len().saturating_sub(1))
            }
            KeyCode::Char('r') => {
                if let Some(row) = s
                    .invites
                    .iter()
                    .filter(|r| r.status == "open")
                    .nth(s.invite_sel)
                {
                    return vec![Effect::Revoke(row.code.clone()), Effect::LoadInvites];
                }
            }
            KeyCode::Char('q') => s.popup = None,
            _ => {}
        },
        Popup::Accept { mut input, status } => {
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
                KeyCode::Char(c) => input.push(c),
                KeyCode::Backspace => {
                    input.pop();
                }
                KeyCode::Enter => {
                    // A path to a screenshot of the QR code: scan it.
                    let t = input.trim();
                    if t.starts_with('/') || t.starts_with("~/") || t.starts_with("./") {
                        let path = t.to_string();
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
                    return vec![Effect::Accept(input)];
                }
                _ => {}
            }
            let err = check_code(&input);
            s.popup = Some(Popup::Accept {
                input,
                status: AcceptStatus::Editing(err),
            });
        }
        Popup::Card { mut input, .. } => match code {
            KeyCode::Enter => {
                let card = input.trim().to_string();
                return match Code::decode(&card) {
                    Ok(Code::Card(_)) => vec![Effect::AddCard(card)],
                    Ok(Code::Invite(_)) => {
                        s.popup = Some(Popup::Card {
                            input,
                            status: Some("that is an invitation: accept it with a".into()),
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
            KeyCode::Backspace => {
                input.pop();
                s.popup = Some(Popup::Card {
                    input,
                    status: None,
                });
            }
            KeyCode::Char(c) => {
                input.push(c);
                s.popup = Some(Popup::Card {
                    input,
                    status: None,
                });
            }
            _ => {}
        },
        Popup::ConfirmRemove(pid, _) => {
            s.popup = None;
            if code == KeyCode::Char('y') {
                return vec![Effect::RemoveContact(pid)];
            }
        }
        Popup::NewGroup {
            mut name,
            mut picked,
            mut cursor,
            mut on_members,
        } => {
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
                            picked.push(pid);
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
        }
        Popup::Help | Popup::ContactInfo | Popup::Members => {
            if matches!(
                code,
                KeyCode::Char('q') | KeyCode::Char('?') | KeyCode::Enter
            ) {
                s.popup = None;
            }
        }
    }
    vec![]
}
