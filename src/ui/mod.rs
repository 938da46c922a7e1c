//! The terminal shell around the UI core: owns the terminal, turns terminal input and
//! runtime events into [`state::Action`]s, runs the [`state::Effect`]s against the runtime,
//! and redraws only when something changed.
//!
//! `state` (update) and `view` (render) are pure; this module is the only I/O.

pub mod qr;
pub mod state;
pub mod view;

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
use state::{update, Action, Effect, State};

/// Capacity of the queue of actions from input and effect tasks.
pub const ACTION_CAPACITY: usize = 256;
/// Messages loaded when a channel opens, and per scroll-back step.
pub const PAGE: usize = 200;

/// Put text on the clipboard: arboard where a clipboard is reachable, else the OSC 52
/// terminal escape (works over SSH in most terminals). Returns which was used.
pub fn copy_to_clipboard(text: &str) -> String {
    if let Ok(mut cb) = arboard::Clipboard::new() {
        if cb.set_text(text.to_string()).is_ok() {
            return "system clipboard".into();
        }
    }
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
    let action = match effect {
        Effect::RefreshContacts => match handle.contacts().await {
            Ok(c) => Action::Contacts(c),
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::RefreshChannels => match handle.channels().await {
            Ok(c) => Action::Channels(c),
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::LoadHistory(ch) => match handle.history(ch.clone(), PAGE).await {
            Ok(m) => Action::History(ch, m),
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::LoadOlder(ch, first) => {
            match handle.history_before(ch.clone(), first, PAGE).await {
                Ok(m) => Action::Older(ch, m),
                Err(e) => Action::Failed(e.to_string()),
            }
        }
        Effect::Send(ch, text) => match handle.send(ch.clone(), text.clone()).await {
            Ok(entry) => Action::Sent(MessageView {
                channel: ch,
                entry,
                author: me,
                author_name: handle.identity().await.map(|i| i.name).unwrap_or_default(),
                ts: crate::app::runtime::now_ms(),
                text: Some(text),
                kind: "text",
            }),
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::CreateInvite => match handle
            .invite(crate::domain::invitation::DEFAULT_INVITE_TTL_SECS)
            .await
        {
            Ok(i) => Action::Invite(i),
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::CreateShortCode => match handle
            .short_code(crate::domain::short_code::DEFAULT_CODE_TTL_SECS)
            .await
        {
            Ok(c) => Action::ShortCode(c),
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::Accept(code) if crate::domain::ShortCode::looks_like(&code) => {
            let (code, url) = state::split_short(&code);
            Action::Accepted(
                handle
                    .accept_pake(Some(code), url, false)
                    .await
                    .map_err(|e| e.to_string()),
            )
        }
        Effect::Accept(code) => Action::Accepted(
            handle
                .accept(code, crate::domain::Via::Invite, false)
                .await
                .map_err(|e| e.to_string()),
        ),
        Effect::Copy(text) => {
            let how = tokio::task::spawn_blocking(move || copy_to_clipboard(&text))
                .await
                .unwrap_or_else(|_| "nowhere".into());
            Action::Copied(how)
        }
        Effect::PasteClipboard => match tokio::task::spawn_blocking(read_clipboard).await {
            Ok(Ok(t)) => Action::Paste(t),
            Ok(Err(e)) => Action::Failed(e),
            Err(_) => Action::Failed("reading the clipboard failed".into()),
        },
        Effect::LoadInvites => match handle.invites().await {
            Ok(list) => {
                let now = now_secs();
                Action::Invites(
                    list.into_iter()
                        .map(|r| state::InviteRow {
                            status: r.status_at(now).as_str().into(),
                            code: r.code,
                            expires_at: r.expires_at,
                        })
                        .collect(),
                )
            }
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::Revoke(code) => match handle.revoke_invite(code).await {
            Ok(_) => Action::Tick(now_secs()),
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::CopyCard => match handle.card().await {
            Ok(card) => {
                let how = tokio::task::spawn_blocking(move || copy_to_clipboard(&card))
                    .await
                    .unwrap_or_else(|_| "nowhere".into());
                Action::Copied(format!("contact card, {how}"))
            }
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::AddCard(card) => {
            Action::CardAdded(handle.add_contact(card).await.map_err(|e| e.to_string()))
        }
        Effect::RemoveContact(pid) => match handle.remove_contact(pid.clone()).await {
            Ok(_) => Action::Removed(pid),
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::CreateGroup(name, members) => match handle.create_channel(name, members).await {
            Ok(id) => Action::GroupCreated(id),
            Err(e) => Action::Failed(e.to_string()),
        },
        Effect::ScanFile(path) => {
            let expanded = match path.strip_prefix("~/") {
                Some(rest) => std::env::var("HOME")
                    .map(|h| format!("{h}/{rest}"))
                    .unwrap_or(path.clone()),
                None => path.clone(),
            };
            match tokio::task::spawn_blocking(move || {
                crate::app::scan::scan_file(std::path::Path::new(&expanded))
            })
            .await
            {
                Ok(Ok(code)) => Action::Paste(code),
                Ok(Err(e)) => Action::Failed(e.to_string()),
                Err(_) => Action::Failed("scanning the image failed".into()),
            }
        }
    };
    let _ = tx.send(action).await;
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
pub async fn run(running: Running, provision: Option<ProvisionCfg>) -> std::io::Result<()> {
    let Running {
        handle,
        mut events,
        info,
        done,
    } = running;
    let me = info.person_id.clone();
    let mut state = State::new(info, now_secs());
    // Provision before taking over the terminal, so a failure can still be read.
    let mut guard = None;
    if let Some(p) = &provision {
        let (lines, g) = crate::app::headless::provision_lines(&handle, p).await;
        state.log.extend(lines);
        guard = g;
    }
    let mut terminal = ratatui::init();
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
        update(&mut state, Action::Resize(sz.width, sz.height));
    }
    let _ = execute!(std::io::stdout(), EnableMouseCapture, EnableBracketedPaste);
    let (atx, mut arx) = mpsc::channel::<Action>(ACTION_CAPACITY);
    for e in [Effect::RefreshContacts, Effect::RefreshChannels] {
        tokio::spawn(run_effect(handle.clone(), me.clone(), e, atx.clone()));
    }
    // crossterm's reader blocks; it lives on its own thread.
    let itx = atx.clone();
    std::thread::spawn(move || loop {
        if itx.is_closed() {
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
        if itx.blocking_send(a).is_err() {
            break;
        }
    });
    #[cfg(unix)]
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = true;
    let result = loop {
        if dirty {
            if let Err(e) = terminal.draw(|f| view::render(&state, f)) {
                break Err(e);
            }
            dirty = false;
        }
        #[cfg(unix)]
        let term = sigterm.recv();
        #[cfg(not(unix))]
        let term = std::future::pending::<Option<()>>();
        let action = tokio::select! {
            // SIGTERM takes the same exit path as `q`, so the terminal is restored.
            _ = term => break Ok(()),
            Some(a) = arx.recv() => a,
            Some(e) = events.recv() => Action::Runtime(e),
            _ = tick.tick() => {
                // Redraw on the clock only while a countdown is shown: idle costs nothing.
                if !matches!(state.popup, Some(state::Popup::Pairing(_))) {
                    state.now = now_secs();
                    continue;
                }
                Action::Tick(now_secs())
            }
        };
        // Coalesce a burst: apply everything queued before drawing once.
        let mut batch = vec![action];
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
            effects.extend(update(&mut state, a));
        }
        effects.dedup();
        for e in effects {
            tokio::spawn(run_effect(handle.clone(), me.clone(), e, atx.clone()));
        }
        dirty = true;
        if state.quit {
            break Ok(());
        }
    };
    restore();
    handle.shutdown();
    let _ = done.await;
    if let Some(g) = guard {
        g.stop().await;
    }
    result
}
