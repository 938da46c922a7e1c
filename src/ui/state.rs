//! UI state and its only mutation, [`update`]: actions in, effects out. No I/O here, so
//! every screen is reproducible in tests through the same path the app uses.

use crossterm::event::{KeyCode, KeyModifiers, MouseEventKind};

use crate::app::runtime::{ContactView, Event, IdentityInfo, MessageView, NewInvite, Paired};
use crate::domain::identity::short_id;
use crate::domain::Channel;
use crate::domain::{Code, CodeError, ShortCode};

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
    pub(super) fn next(self) -> Focus {
        match self {
            Focus::Contacts => Focus::Channels,
            Focus::Channels => Focus::Messages,
            Focus::Messages => Focus::Composer,
            Focus::Composer => Focus::Contacts,
        }
    }
    pub(super) fn prev(self) -> Focus {
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
    /// A pairing just completed on our side (we are the node that was dialed): who, and
    /// the verification string to compare.
    Paired {
        /// The new contact's name.
        name: String,
        /// The verification string.
        verification: String,
    },
    /// The network view: where we and each contact can be reached.
    Network {
        /// Lines scrolled down.
        scroll: u16,
    },
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
    /// Accent, time format and key bindings from the config file.
    pub prefs: crate::ui::prefs::Prefs,
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
    /// Rows scrolled up from the bottom.
    pub scroll: usize,
    /// Messages that arrived below while scrolled up (the title says so).
    pub new_below: usize,
    /// Contacts changed in a way worth a reload at the next tick (deliveries).
    pub contacts_stale: bool,
    /// A channel to open as soon as the list has it (a group we just created).
    pub open_next: Option<String>,
    /// Messages arrived in the open channel since it was last marked read.
    pub read_dirty: bool,
    /// A short confirmation for the status line ("copied"), until the given second.
    pub notice: Option<(String, u64)>,
    /// When the contacts were last reloaded on a tick (unix seconds).
    pub contacts_at: u64,
    /// The cursor in the open dialog's field (`None`: at its end).
    pub field_cursor: Option<usize>,
    /// Entries sent by us that no peer has confirmed yet (shown with a marker).
    pub pending: Vec<String>,
    /// Entries confirmed before their `Sent` arrived (the two race).
    pub delivered_recent: Vec<String>,
    /// Composer text and cursor.
    pub composer: crate::ui::editor::Editor,
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
    /// The network view, refreshed each second while it is open.
    pub network: Option<crate::app::runtime::NetView>,
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
    /// A fresh network view.
    Network(Box<crate::app::runtime::NetView>),
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
    /// Load the network view.
    LoadNetwork,
    /// The open channel is read up to its newest message.
    MarkRead(String),
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
            composer: crate::ui::editor::Editor::default(),
            new_below: 0,
            contacts_stale: false,
            open_next: None,
            read_dirty: false,
            notice: None,
            contacts_at: now,
            field_cursor: None,
            sent_lines: vec![],
            recall: None,
            // Nothing to write to yet: keys start actions ("press p to pair" works at once);
            // the composer takes the focus when the first channel opens.
            focus: Focus::Contacts,
            popup: None,
            log: vec![],
            last_error: None,
            synced: vec![],
            network: None,
            invites: vec![],
            short_code: None,
            invite_sel: 0,
            size: (100, 30),
            now,
            quit: false,
            prefs: crate::ui::prefs::Prefs::default(),
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

    pub(super) fn log(&mut self, line: String) {
        self.log.push(line);
        if self.log.len() > LOG_KEEP {
            self.log.remove(0);
        }
    }

    pub(super) fn select_channel(&mut self, i: usize) -> Vec<Effect> {
        if self.channels.is_empty() {
            return vec![];
        }
        self.channel_sel = i.min(self.channels.len() - 1);
        self.scroll = 0;
        self.new_below = 0;
        self.messages.clear();
        match self.channel_id() {
            Some(id) => vec![Effect::LoadHistory(id.to_string())],
            None => vec![],
        }
    }
}

/// The contacts are reloaded at least this often (seconds).
pub const CONTACTS_EVERY_SECS: u64 = 5;
/// Seconds a notice stays on the status line.
pub const NOTICE_SECS: u64 = 6;

/// An open code is shown again by `p` while it has at least this long to live (seconds).
pub const REUSE_MIN_SECS: u64 = 60;

impl State {
    /// Whether [`Action::Tick`] at `now` would do anything: the shell skips the others.
    pub fn wants_tick(&self, now: u64) -> bool {
        matches!(
            self.popup,
            Some(Popup::Pairing(_)) | Some(Popup::Network { .. })
        ) || self.read_dirty
            || self.contacts_stale
            || self.notice.is_some()
            || now >= self.contacts_at + CONTACTS_EVERY_SECS
    }

    /// The open invitations and short codes, as the pairing screen lists them.
    pub fn open_invites(&self) -> Vec<&InviteRow> {
        self.invites.iter().filter(|r| r.status == "open").collect()
    }
}

/// Most composer rows shown at once (it scrolls within itself beyond).
pub const COMPOSER_ROWS: usize = 5;
/// Rows of the header and the status bar.
const CHROME_ROWS: u16 = 3 + 2;

impl State {
    /// Columns inside the message and composer boxes.
    pub fn main_width(&self) -> u16 {
        self.size.0.saturating_sub(SIDE_WIDTH + 2)
    }

    /// The composer's rows as drawn (wrapped to its width, the cursor mark included) and
    /// the cursor's (row, column).
    pub fn composer_layout(&self) -> (Vec<String>, (usize, usize)) {
        let width = usize::from(self.main_width().saturating_sub(1)).max(10);
        self.composer.layout(width)
    }

    /// Height of the composer box, borders included.
    pub fn composer_height(&self) -> u16 {
        let rows = self.composer_layout().0.len().clamp(1, COMPOSER_ROWS);
        u16::try_from(rows).unwrap_or(1) + 2
    }

    /// Rows of messages on screen: what PgUp and PgDn move by (less one, for context).
    pub fn page_rows(&self) -> usize {
        let inner = self
            .size
            .1
            .saturating_sub(CHROME_ROWS + self.composer_height() + 2);
        usize::from(inner.saturating_sub(1)).max(1)
    }

    /// Back at the newest message.
    pub fn scroll_to_bottom(&mut self) {
        self.scroll = 0;
        self.new_below = 0;
    }
}

/// Hints for the status bar, by focus.
pub fn key_hints(s: &State) -> std::borrow::Cow<'static, str> {
    let k = |a: &str| s.prefs.keys.key(a);
    let fixed = match (&s.popup, s.focus) {
        (Some(Popup::Pairing(_)), _) => "c copy code · n new code · ↑↓ pick · r revoke · Esc close",
        (Some(Popup::Paired { .. }), _) => "compare the verification with theirs · Enter close",
        (Some(Popup::NewGroup { .. }), _) => {
            "type a name · Tab members · Space pick · Enter create · Esc"
        }
        (Some(Popup::ConfirmRemove(..)), _) => "y remove · any other key keeps the contact",
        (Some(Popup::Card { .. }), _) => "paste the other side's card · Enter import · Esc close",
        (Some(Popup::Accept { .. }), _) => {
            "paste or type the code · Ctrl-V clipboard · Enter pair · Esc close"
        }
        (Some(Popup::Network { .. }), _) => "↑↓/j k scroll · PgUp PgDn · Esc close",
        (Some(_), _) => "Esc close",
        (None, Focus::Composer) => {
            "Enter send · Alt-Enter newline · Up recall · Tab focus · Ctrl-C quit"
        }
        (None, Focus::Messages) => {
            return format!(
                "↑↓/j k scroll · PgUp older · Tab focus · {} help · {} quit",
                k("help"),
                k("quit")
            )
            .into()
        }
        // Each pane says what Enter does there, so the two lists never read alike.
        (None, Focus::Channels) => {
            let parts = [
                "↑↓ · Enter write here".to_string(),
                format!("{} new group", k("new_group")),
                format!("{} members", k("members")),
                format!("{} network", k("network")),
                format!("{} help", k("help")),
                format!("{} quit", k("quit")),
            ];
            return parts.join(" · ").into();
        }
        (None, _) => {
            let parts = [
                "↑↓ · Enter chat".to_string(),
                format!("{} pair", k("pair")),
                format!("{} accept", k("accept")),
                format!("{} group", k("new_group")),
                format!("{} network", k("network")),
                format!("{} help", k("help")),
                format!("{} quit", k("quit")),
            ];
            return parts.join(" · ").into();
        }
    };
    fixed.into()
}

pub(super) fn trim_window(s: &mut State) {
    if s.messages.len() > WINDOW_MESSAGES && s.scroll == 0 {
        let drop = s.messages.len() - WINDOW_MESSAGES;
        s.messages.drain(..drop);
    }
}

pub(super) fn scroll_up(s: &mut State, n: usize) -> Vec<Effect> {
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
