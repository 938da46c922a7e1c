//! The terminal shell around the UI core: owns the terminal, turns terminal input and
//! runtime events into [`state::Action`]s, runs the [`state::Effect`]s against the runtime,
//! and redraws only when something changed.
//!
//! `state` (update) and `view` (render) are pure; this module is the only I/O.

mod editor;
mod keys;
mod netview;
mod popups;
pub mod prefs;
pub mod qr;
pub mod state;
pub mod update;
pub mod view;
pub mod widgets;

use std::io::Write;
use std::time::Duration;

use crossterm::event::{
    self, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as TermEvent, KeyEventKind,
};
use crossterm::execute;
use tokio::sync::mpsc;

use crate::app::headless::ProvisionCfg;
use crate::app::runtime::{now_secs, Handle, MessageView, Running};
pub use prefs::Prefs;
use state::{Action, Effect, State};
use update::update;

/// Capacity of the queue of actions from input and effect tasks.
pub const ACTION_CAPACITY: usize = 256;
/// Messages loaded when a channel opens, and per scroll-back step.
pub const PAGE: usize = 200;

/// Put text on the clipboard: arboard where a clipboard is reachable, else the OSC 52
/// terminal escape (works over SSH in most terminals). Returns which was used.
pub fn copy_to_clipboard(text: &str) -> String {
    // One clipboard for the program's life: on X11 and Wayland what was copied vanishes
    // when its `Clipboard` is dropped.
    static CLIPBOARD: std::sync::OnceLock<std::sync::Mutex<Option<arboard::Clipboard>>> =
        std::sync::OnceLock::new();
    let cell = CLIPBOARD.get_or_init(|| std::sync::Mutex::new(arboard::Clipboard::new().ok()));
    let mut guard = cell
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(cb) = guard.as_mut() {
        if cb.set_text(text.to_string()).is_ok() {
            return "system clipboard".into();
        }
    }
    drop(guard);
    let b64 = data_encoding::BASE64.encode(text.as_bytes());
    let mut out = std::io::stdout();
    let _ = write!(out, "\x1b]52;c;{b64}\x07");
    let _ = out.flush();
    "terminal clipboard (OSC 52)".into()
}

/// Text from the clipboard, or the code in a QR image on it (a screenshot).
fn read_clipboard() -> Result<String, String> {
    let mut cb = arboard::Clipboard::new().map_err(|_| {
        "no clipboard is reachable here; paste with the terminal instead".to_string()
    })?;
    if let Ok(t) = cb.get_text() {
        return Ok(t);
    }
    match cb.get_image() {
        Ok(img) => crate::app::scan::scan_rgba(img.width, img.height, &img.bytes)
            .map_err(|e| e.to_string()),
        Err(_) => Err("the clipboard holds neither text nor an image".into()),
    }
}

async fn run_effect(handle: Handle, me: String, effect: Effect, tx: mpsc::Sender<Action>) {
    let action = effect_action(&handle, me, effect)
        .await
        .unwrap_or_else(Action::Failed);
    let _ = tx.send(action).await;
}

/// An error as the one sentence the status line shows.
fn say(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// What an effect comes to; a failure is the sentence to show.
async fn effect_action(handle: &Handle, me: String, effect: Effect) -> Result<Action, String> {
    match effect {
        Effect::Copy(_) | Effect::CopyCard | Effect::PasteClipboard | Effect::ScanFile(_) => {
            clipboard_effect(handle, effect).await
        }
        Effect::CreateInvite
        | Effect::CreateShortCode
        | Effect::Accept(_)
        | Effect::LoadInvites
        | Effect::Revoke(_)
        | Effect::AddCard(_) => pairing_effect(handle, effect).await,
        other => data_effect(handle, me, other).await,
    }
}

/// Contacts, channels and messages.
async fn data_effect(handle: &Handle, me: String, effect: Effect) -> Result<Action, String> {
    Ok(match effect {
        Effect::RefreshContacts => Action::Contacts(handle.contacts().await.map_err(say)?),
        Effect::RefreshChannels => Action::Channels(handle.channels().await.map_err(say)?),
        Effect::LoadHistory(ch) => {
            let m = handle.history(ch.clone(), PAGE).await.map_err(say)?;
            Action::History(ch, m)
        }
        Effect::LoadOlder(ch, first) => {
            let m = handle.history_before(ch.clone(), first, PAGE).await;
            Action::Older(ch, m.map_err(say)?)
        }
        Effect::Send(ch, text) => {
            let entry = handle.send(ch.clone(), text.clone()).await.map_err(say)?;
            let author_name = handle.identity().await.map(|i| i.name).unwrap_or_default();
            Action::Sent(MessageView {
                channel: ch,
                entry,
                author: me,
                author_name,
                ts: crate::app::runtime::now_ms(),
                text: Some(text),
                kind: "text",
            })
        }
        Effect::RemoveContact(pid) => {
            handle.remove_contact(pid.clone()).await.map_err(say)?;
            Action::Removed(pid)
        }
        Effect::CreateGroup(name, members) => {
            Action::GroupCreated(handle.create_channel(name, members).await.map_err(say)?)
        }
        Effect::MarkRead(ch) => {
            handle.mark_read(ch).await.map_err(say)?;
            Action::Tick(now_secs())
        }
        Effect::LoadNetwork => Action::Network(Box::new(handle.endpoints().await.map_err(say)?)),
        other => unreachable!("invariant: effect_action routes {other:?} elsewhere"),
    })
}

/// The invitations as the pairing screen lists them.
async fn invite_rows(handle: &Handle) -> Result<Vec<state::InviteRow>, String> {
    let now = now_secs();
    let list = handle.invites().await.map_err(say)?;
    Ok(list
        .into_iter()
        .map(|r| state::InviteRow {
            status: r.status_at(now).as_str().into(),
            code: r.code,
            expires_at: r.expires_at,
        })
        .collect())
}

/// Invitations, short codes, accepting and cards.
async fn pairing_effect(handle: &Handle, effect: Effect) -> Result<Action, String> {
    use crate::domain::{invitation, short_code};
    Ok(match effect {
        Effect::CreateInvite => {
            let i = handle.invite(invitation::DEFAULT_INVITE_TTL_SECS).await;
            Action::Invite(i.map_err(say)?)
        }
        Effect::CreateShortCode => {
            let c = handle.short_code(short_code::DEFAULT_CODE_TTL_SECS).await;
            Action::ShortCode(c.map_err(say)?)
        }
        Effect::Accept(code) if crate::domain::ShortCode::looks_like(&code) => {
            let (code, url) = state::split_short(&code);
            let r = handle.accept_pake(Some(code), url, false).await;
            Action::Accepted(r.map_err(say))
        }
        Effect::Accept(code) => {
            let r = handle.accept(code, crate::domain::Via::Invite, false).await;
            Action::Accepted(r.map_err(say))
        }
        Effect::LoadInvites => Action::Invites(invite_rows(handle).await?),
        Effect::Revoke(code) => {
            handle.revoke_invite(code).await.map_err(say)?;
            // The list after the revocation (a separate load could overtake it).
            Action::Invites(invite_rows(handle).await?)
        }
        Effect::AddCard(card) => Action::CardAdded(handle.add_contact(card).await.map_err(say)),
        other => unreachable!("invariant: effect_action routes {other:?} elsewhere"),
    })
}

/// The clipboard and pictures of codes: blocking work, off the runtime's workers.
async fn clipboard_effect(handle: &Handle, effect: Effect) -> Result<Action, String> {
    let blocking = |f: Box<dyn FnOnce() -> Result<String, String> + Send>| async move {
        tokio::task::spawn_blocking(f)
            .await
            .unwrap_or_else(|_| Err("the clipboard task failed".into()))
    };
    Ok(match effect {
        Effect::Copy(text) => {
            Action::Copied(blocking(Box::new(move || Ok(copy_to_clipboard(&text)))).await?)
        }
        Effect::CopyCard => {
            let card = handle.card().await.map_err(say)?;
            let how = blocking(Box::new(move || Ok(copy_to_clipboard(&card)))).await?;
            Action::Copied(format!("{how}: your contact card"))
        }
        Effect::PasteClipboard => Action::Paste(blocking(Box::new(read_clipboard)).await?),
        Effect::ScanFile(path) => {
            let expanded = match path.strip_prefix("~/") {
                Some(rest) => std::env::var("HOME")
                    .map(|h| format!("{h}/{rest}"))
                    .unwrap_or(path.clone()),
                None => path.clone(),
            };
            let scan =
                move || crate::app::scan::scan_file(std::path::Path::new(&expanded)).map_err(say);
            Action::Paste(blocking(Box::new(scan)).await?)
        }
        other => unreachable!("invariant: effect_action routes {other:?} elsewhere"),
    })
}

fn restore() {
    let _ = execute!(
        std::io::stdout(),
        DisableMouseCapture,
        DisableBracketedPaste
    );
    ratatui::restore();
}

/// Run the TUI until the user quits. The terminal is restored on every exit path.
pub async fn run(
    running: Running,
    provision: Option<ProvisionCfg>,
    prefs: Prefs,
) -> std::io::Result<()> {
    let Running {
        handle,
        mut events,
        info,
        done,
    } = running;
    let me = info.person_id.clone();
    let mut state = State::new(info, now_secs());
    state.prefs = prefs;
    // Local time: read once at start (TZ, /etc/localtime); UTC when there is none.
    state.prefs.tz = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    // Provision before taking over the terminal, so a failure can still be read.
    let mut guard = None;
    if let Some(p) = &provision {
        let (lines, g) = crate::app::headless::provision_lines(&handle, p).await;
        state.log.extend(lines);
        guard = g;
    }
    let mut terminal = start_terminal(&mut state);
    let (atx, mut arx) = mpsc::channel::<Action>(ACTION_CAPACITY);
    for e in [Effect::RefreshContacts, Effect::RefreshChannels] {
        tokio::spawn(run_effect(handle.clone(), me.clone(), e, atx.clone()));
    }
    spawn_input_thread(atx.clone());
    let shell = Shell {
        handle: handle.clone(),
        me,
        atx,
    };
    let result = shell
        .event_loop(&mut terminal, &mut state, &mut arx, &mut events)
        .await;
    restore();
    handle.shutdown();
    let _ = done.await;
    if let Some(g) = guard {
        g.stop().await;
    }
    result
}

/// Take over the terminal: alternate screen, mouse and bracketed paste, and a panic hook
/// that gives the terminal back.
fn start_terminal(state: &mut State) -> ratatui::DefaultTerminal {
    let terminal = ratatui::init();
    // ratatui's hook restores the screen; ours also turns mouse capture and bracketed paste
    // off, so a panic never leaves the terminal reporting mouse moves.
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = execute!(
            std::io::stdout(),
            DisableMouseCapture,
            DisableBracketedPaste
        );
        prev(info);
    }));
    if let Ok(sz) = terminal.size() {
        update(state, Action::Resize(sz.width, sz.height));
    }
    let _ = execute!(std::io::stdout(), EnableMouseCapture, EnableBracketedPaste);
    terminal
}

/// crossterm's reader blocks: it lives on its own thread and sends actions.
fn spawn_input_thread(tx: mpsc::Sender<Action>) {
    std::thread::spawn(move || loop {
        if tx.is_closed() {
            break;
        }
        if !event::poll(Duration::from_millis(250)).unwrap_or(false) {
            continue;
        }
        let a = match event::read() {
            Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => {
                Action::Key(k.code, k.modifiers)
            }
            Ok(TermEvent::Paste(p)) => Action::Paste(p),
            Ok(TermEvent::Mouse(m)) => Action::Mouse(m.kind, m.column, m.row),
            Ok(TermEvent::Resize(w, h)) => Action::Resize(w, h),
            Ok(_) => continue,
            Err(_) => break,
        };
        if tx.blocking_send(a).is_err() {
            break;
        }
    });
}

/// What the loop needs to run effects.
struct Shell {
    handle: Handle,
    me: String,
    atx: mpsc::Sender<Action>,
}

impl Shell {
    /// Draw when something changed, wait for the next action, apply it with everything
    /// queued behind it, run the effects; until quit or SIGTERM.
    async fn event_loop(
        &self,
        terminal: &mut ratatui::DefaultTerminal,
        state: &mut State,
        arx: &mut mpsc::Receiver<Action>,
        events: &mut mpsc::Receiver<crate::app::runtime::Event>,
    ) -> std::io::Result<()> {
        #[cfg(unix)]
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut dirty = true;
        loop {
            if dirty {
                terminal.draw(|f| view::render(state, f))?;
                dirty = false;
            }
            #[cfg(unix)]
            let term = sigterm.recv();
            #[cfg(not(unix))]
            let term = std::future::pending::<Option<()>>();
            let action = tokio::select! {
                // SIGTERM takes the same exit path as `q`, so the terminal is restored.
                _ = term => return Ok(()),
                Some(a) = arx.recv() => a,
                Some(e) = events.recv() => Action::Runtime(e),
                _ = tick.tick() => {
                    // A tick (and a redraw) only when the state has a use for it: a
                    // countdown, the network view, a read marker or a reload due. Idle
                    // costs nothing.
                    let now = now_secs();
                    if !state.wants_tick(now) {
                        state.now = now;
                        continue;
                    }
                    Action::Tick(now)
                }
            };
            self.apply(state, action, arx, events);
            dirty = true;
            if state.quit {
                return Ok(());
            }
        }
    }

    /// Apply `first` and everything queued behind it (a burst is drawn once), then run the
    /// effects.
    fn apply(
        &self,
        state: &mut State,
        first: Action,
        arx: &mut mpsc::Receiver<Action>,
        events: &mut mpsc::Receiver<crate::app::runtime::Event>,
    ) {
        let mut batch = vec![first];
        while let Ok(a) = arx.try_recv() {
            batch.push(a);
            if batch.len() >= 512 {
                break;
            }
        }
        while let Ok(e) = events.try_recv() {
            batch.push(Action::Runtime(e));
            if batch.len() >= 1024 {
                break;
            }
        }
        let mut effects = Vec::new();
        for a in batch {
            effects.extend(update(state, a));
        }
        effects.dedup();
        for e in effects {
            let (h, me, tx) = (self.handle.clone(), self.me.clone(), self.atx.clone());
            tokio::spawn(run_effect(h, me, e, tx));
        }
    }
}
