//! The ratatui interface: `State` is updated only by [`update`], and [`render`] reads it.
//!
//! This first version shows the identity header, the contacts with their live state and a
//! log of connection events; pairing, channels and the composer come with their issues.

use std::time::Duration;

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::runtime::{ContactView, Event, IdentityInfo, PeerState, Running};
use crate::identity::short_id;

/// Smallest usable terminal.
pub const MIN_SIZE: (u16, u16) = (80, 24);
/// Log lines kept on screen.
pub const LOG_KEEP: usize = 200;

/// What the screen shows.
#[derive(Clone, Debug)]
pub struct State {
    /// Who we are.
    pub me: IdentityInfo,
    /// Contacts with live state.
    pub contacts: Vec<ContactView>,
    /// Recent events, newest last.
    pub log: Vec<String>,
    /// Set when the user asked to quit.
    pub quit: bool,
}

/// Inputs to [`update`].
#[derive(Clone, Debug)]
pub enum Action {
    /// A key was pressed.
    Key(KeyCode, KeyModifiers),
    /// The runtime reported something.
    Runtime(Event),
    /// A fresh contact list arrived.
    Contacts(Vec<ContactView>),
}

/// Side effects [`update`] asks the shell to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Reload the contact list.
    RefreshContacts,
}

impl State {
    /// The initial state.
    pub fn new(me: IdentityInfo) -> Self {
        State {
            me,
            contacts: Vec::new(),
            log: Vec::new(),
            quit: false,
        }
    }
}

/// The only mutation of [`State`].
pub fn update(state: &mut State, action: Action) -> Vec<Effect> {
    match action {
        Action::Key(KeyCode::Char('q'), _) => state.quit = true,
        Action::Key(KeyCode::Char('c'), m) if m.contains(KeyModifiers::CONTROL) => {
            state.quit = true
        }
        Action::Key(..) => {}
        Action::Runtime(e) => {
            let line = match &e {
                Event::Connected { person_id, name } => {
                    format!("connected to {name} ({})", short_id(person_id))
                }
                Event::Disconnected { person_id, reason } => {
                    format!("disconnected from {}: {reason}", short_id(person_id))
                }
                Event::ContactAdded {
                    name,
                    person_id,
                    verification,
                    ..
                } => format!(
                    "new contact {name} ({}), verification {verification}",
                    short_id(person_id)
                ),
                Event::EndpointsChanged { person_id, urls } => {
                    format!("{} now at {}", short_id(person_id), urls.join(", "))
                }
                Event::Error { message, .. } => format!("error: {message}"),
                Event::Message(m) => format!(
                    "[{}] {}: {}",
                    short_id(&m.channel),
                    m.author_name,
                    m.text.as_deref().unwrap_or("(channel change)")
                ),
                Event::Synced { person_id } => format!("caught up with {}", short_id(person_id)),
            };
            state.log.push(line);
            if state.log.len() > LOG_KEEP {
                state.log.remove(0);
            }
            return vec![Effect::RefreshContacts];
        }
        Action::Contacts(c) => state.contacts = c,
    }
    Vec::new()
}

fn dot(s: PeerState) -> Span<'static> {
    match s {
        PeerState::Connected => Span::styled("●", Style::default().fg(Color::Green)),
        PeerState::Connecting => Span::styled("●", Style::default().fg(Color::Yellow)),
        PeerState::Offline => Span::styled("○", Style::default().fg(Color::DarkGray)),
    }
}

/// Draw the state.
pub fn render(state: &State, f: &mut Frame) {
    let area = f.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let msg = format!(
            "terminal too small: {}x{}, need at least {}x{}",
            area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let [header, body, status] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(area);
    let connected = state
        .contacts
        .iter()
        .filter(|c| c.state == PeerState::Connected)
        .count();
    let head = Line::from(vec![
        Span::styled(
            state.me.name.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  {}  ", short_id(&state.me.person_id))),
        Span::styled(state.me.role.as_str(), Style::default().fg(Color::Cyan)),
        Span::raw(format!(
            "  {}  {connected}/{} connected",
            state.me.endpoint.as_deref().unwrap_or("dial-out only"),
            state.contacts.len()
        )),
    ]);
    f.render_widget(
        Paragraph::new(head).block(Block::default().borders(Borders::ALL).title(" lama-tui ")),
        header,
    );
    let [side, main] =
        Layout::horizontal([Constraint::Length(32), Constraint::Min(20)]).areas(body);
    render_contacts(state, f, side);
    let log: Vec<ListItem> = state
        .log
        .iter()
        .rev()
        .take(main.height as usize)
        .rev()
        .map(|l| ListItem::new(l.as_str()))
        .collect();
    f.render_widget(
        List::new(log).block(Block::default().borders(Borders::ALL).title(" events ")),
        main,
    );
    f.render_widget(Paragraph::new(" q quit"), status);
}

fn render_contacts(state: &State, f: &mut Frame, area: Rect) {
    let items: Vec<ListItem> = state
        .contacts
        .iter()
        .map(|c| {
            ListItem::new(Line::from(vec![
                dot(c.state),
                Span::raw(format!(
                    " {} {}",
                    c.contact.person.name,
                    short_id(&c.contact.person_id())
                )),
            ]))
        })
        .collect();
    f.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title(" contacts ")),
        area,
    );
}

/// Run the TUI until the user quits. The terminal is restored on every exit path.
pub async fn run(
    running: Running,
    provision: Option<crate::app::headless::ProvisionCfg>,
) -> std::io::Result<()> {
    let Running {
        handle,
        mut events,
        info,
        done,
    } = running;
    let mut state = State::new(info);
    // Provision before taking over the terminal, so a failure can still be read.
    let mut guard = None;
    if let Some(p) = &provision {
        let (lines, g) = crate::app::headless::provision_lines(&handle, p).await;
        state.log.extend(lines);
        guard = g;
    }
    let mut terminal = ratatui::init();
    if let Ok(c) = handle.contacts().await {
        update(&mut state, Action::Contacts(c));
    }
    let (ktx, mut krx) = tokio::sync::mpsc::channel(64);
    // crossterm's reader blocks; it lives on its own thread and feeds the select below.
    std::thread::spawn(move || loop {
        if event::poll(Duration::from_millis(250)).unwrap_or(false) {
            match event::read() {
                Ok(TermEvent::Key(k)) if k.kind == KeyEventKind::Press => {
                    if ktx.blocking_send(Action::Key(k.code, k.modifiers)).is_err() {
                        break;
                    }
                }
                Ok(_) => {
                    if ktx.blocking_send(Action::Contacts(Vec::new())).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        } else if ktx.is_closed() {
            break;
        }
    });
    #[cfg(unix)]
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = loop {
        if let Err(e) = terminal.draw(|f| render(&state, f)) {
            break Err(e);
        }
        #[cfg(unix)]
        let term = sigterm.recv();
        #[cfg(not(unix))]
        let term = std::future::pending::<Option<()>>();
        let effects = tokio::select! {
            // SIGTERM takes the same exit path as `q`, so the terminal is restored.
            _ = term => break Ok(()),
            Some(a) = krx.recv() => {
                // A resize arrives as an empty refresh; keep the list, redraw.
                match a {
                    Action::Contacts(_) => vec![Effect::RefreshContacts],
                    a => update(&mut state, a),
                }
            }
            Some(e) = events.recv() => update(&mut state, Action::Runtime(e)),
        };
        for e in effects {
            match e {
                Effect::RefreshContacts => {
                    if let Ok(c) = handle.contacts().await {
                        update(&mut state, Action::Contacts(c));
                    }
                }
            }
        }
        if state.quit {
            break Ok(());
        }
    };
    ratatui::restore();
    handle.shutdown();
    let _ = done.await;
    if let Some(g) = guard {
        g.stop().await;
    }
    result
}
