//! Rendering: a pure function of [`State`] into a ratatui frame.

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::runtime::PeerState;
use crate::domain::identity::short_id;
use crate::ui::editor;
use crate::ui::popups::render_popup;
use crate::ui::state::{key_hints, Focus, State, SIDE_WIDTH};
use crate::ui::widgets::dot;
use crate::ui::widgets::{self, block};
pub use crate::ui::widgets::{day_of, time_of, CODE_ROW};

/// Smallest usable terminal.
pub const MIN_SIZE: (u16, u16) = (80, 24);

/// `text` cut to `room` columns, with `…` where it was cut.
fn fit(text: &str, room: usize) -> String {
    let width: usize = text.chars().map(editor::char_width).sum();
    if width <= room {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = editor::char_width(c);
        if used + w + 1 > room {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// ` (N)` in bold yellow, or nothing when there is nothing unread.
fn unread_badge(n: u64) -> Option<Span<'static>> {
    (n > 0).then(|| {
        Span::styled(
            format!(" ({n})"),
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        )
    })
}

/// Draw the whole screen.
pub fn render(s: &State, f: &mut Frame) {
    draw(s, f);
    widgets::scrub(f.buffer_mut());
}

fn draw(s: &State, f: &mut Frame) {
    let area = f.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let msg = format!(
            "Terminal too small: {}x{}. lama-tui needs at least {}x{}; enlarge the window.",
            area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let [header, body, status] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(10),
        Constraint::Length(2),
    ])
    .areas(area);
    render_header(s, f, header);
    let [side, main] =
        Layout::horizontal([Constraint::Length(SIDE_WIDTH), Constraint::Min(40)]).areas(body);
    let [contacts, channels] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(side);
    render_contacts(s, f, contacts);
    render_channels(s, f, channels);
    let [msgs, composer] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(s.composer_height())]).areas(main);
    render_messages(s, f, msgs);
    render_composer(s, f, composer);
    render_status(s, f, status);
    if let Some(p) = &s.popup {
        render_popup(s, p, f, area);
    }
}

/// The composer: its target in the title, the text wrapped, the cursor marked, scrolled
/// within itself to keep the cursor in view.
fn render_composer(s: &State, f: &mut Frame, area: Rect) {
    let width = usize::from(area.width.saturating_sub(3)).max(10);
    let (mut rows, (row, col)) = s.composer.layout(width);
    let focused = s.focus == Focus::Composer && s.popup.is_none();
    if focused {
        let r = &mut rows[row];
        let at = r
            .char_indices()
            .scan(0, |w, (i, c)| {
                let here = *w;
                *w += crate::ui::editor::char_width(c);
                Some((i, here))
            })
            .find(|(_, w)| *w >= col)
            .map_or(r.len(), |(i, _)| i);
        r.insert(at, '▏');
    }
    let visible = usize::from(area.height.saturating_sub(2)).max(1);
    let top = row.saturating_sub(visible - 1);
    let lines: Vec<Line> = rows
        .into_iter()
        .skip(top)
        .take(visible)
        .map(Line::raw)
        .collect();
    let target = s
        .channels
        .get(s.channel_sel)
        .map(|(c, _)| format!("message to {}", s.channel_name(c)))
        .unwrap_or_else(|| "message".into());
    f.render_widget(
        Paragraph::new(lines).block(block(&target, s.focus == Focus::Composer, s.prefs.accent)),
        area,
    );
}

fn render_header(s: &State, f: &mut Frame, area: Rect) {
    let connected = s
        .contacts
        .iter()
        .filter(|c| c.state == PeerState::Connected)
        .count();
    let line = Line::from(vec![
        Span::styled(
            s.me.name.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  {}  ", short_id(&s.me.person_id))),
        Span::styled(s.me.role.as_str(), Style::default().fg(s.prefs.accent)),
        Span::raw(format!(
            "  {}  ·  {connected}/{} contacts connected",
            s.me.endpoint.as_deref().unwrap_or("dial-out only"),
            s.contacts.len()
        )),
    ]);
    f.render_widget(
        Paragraph::new(line).block(block("lama-tui", false, s.prefs.accent)),
        area,
    );
}

fn render_contacts(s: &State, f: &mut Frame, area: Rect) {
    let items: Vec<ListItem> = s
        .contacts
        .iter()
        .map(|c| {
            let name = c
                .contact
                .profile
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_else(|| c.contact.person.name.clone());
            let pid = c.contact.person_id();
            let unread = s
                .channels
                .iter()
                .find(|(ch, _)| {
                    ch.members.len() == 2
                        && ch.id.contains("<->")
                        && ch.members.iter().any(|m| *m == pid)
                })
                .map(|(_, n)| *n)
                .unwrap_or(0);
            // The unread count must stay whole: the name gives way first, then the id.
            let badge = unread_badge(unread);
            let room = usize::from(area.width.saturating_sub(2))
                .saturating_sub(2 + badge.as_ref().map_or(0, |b| b.content.chars().count()));
            let id = short_id(&pid).to_string();
            let name = fit(&name, room.saturating_sub(id.len() + 1));
            let id = if name.chars().count() + 1 + id.len() <= room {
                id
            } else {
                String::new()
            };
            let mut spans = vec![
                dot(c.state),
                Span::raw(format!(" {name} ")),
                Span::styled(id, Style::default().fg(Color::DarkGray)),
            ];
            spans.extend(badge);
            ListItem::new(Line::from(spans))
        })
        .collect();
    let empty = items.is_empty();
    let mut st = ListState::default().with_selected((!empty).then_some(s.contact_sel));
    let list = List::new(items)
        .block(block(
            "contacts",
            s.focus == Focus::Contacts,
            s.prefs.accent,
        ))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    f.render_stateful_widget(list, area, &mut st);
    if empty {
        let hint = if s.me.endpoint.is_some() {
            "no contacts yet: press p to pair"
        } else {
            "no contacts yet: press a to accept a code"
        };
        let inner = Rect::new(area.x + 1, area.y + 1, area.width.saturating_sub(2), 2);
        f.render_widget(
            Paragraph::new(hint)
                .style(Style::default().fg(Color::DarkGray))
                .wrap(Wrap { trim: true }),
            inner,
        );
    }
}

fn render_channels(s: &State, f: &mut Frame, area: Rect) {
    let items: Vec<ListItem> = s
        .channels
        .iter()
        .map(|(c, unread)| {
            let kind = if c.members.len() == 2 && c.id.contains("<->") {
                "@"
            } else {
                "#"
            };
            let mut spans = vec![Span::raw(format!("{kind} {}", s.channel_name(c)))];
            spans.extend(unread_badge(*unread));
            ListItem::new(Line::from(spans))
        })
        .collect();
    let mut st =
        ListState::default().with_selected((!s.channels.is_empty()).then_some(s.channel_sel));
    let list = List::new(items)
        .block(block(
            "channels",
            s.focus == Focus::Channels,
            s.prefs.accent,
        ))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    f.render_stateful_widget(list, area, &mut st);
}

fn render_messages(s: &State, f: &mut Frame, area: Rect) {
    let title = s
        .channels
        .get(s.channel_sel)
        .map(|(c, _)| s.channel_name(c))
        .unwrap_or_else(|| "no channel".into());
    let inner_h = area.height.saturating_sub(2) as usize;
    let width = usize::from(area.width.saturating_sub(2)).max(20);
    // Build lines bottom-up, only as many as fit: cost is independent of history size.
    let mut lines: Vec<Line> = Vec::with_capacity(inner_h + 2);
    let skip = s.scroll;
    let mut produced = 0usize;
    let mut i = s.messages.len();
    while i > 0 && lines.len() < inner_h {
        i -= 1;
        let m = &s.messages[i];
        let own = m.author == s.me.person_id;
        let name_style = if own {
            Style::default()
                .fg(s.prefs.accent)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default()
                .fg(Color::Magenta)
                .add_modifier(Modifier::BOLD)
        };
        let marker = if own && s.pending.contains(&m.entry) {
            " …"
        } else {
            ""
        };
        let time = time_of(m.ts, s.prefs.time_format, &s.prefs.tz);
        let mut msg_lines = message_rows(
            MessageParts {
                time,
                name: &m.author_name,
                name_style,
                text: m.text.as_deref().unwrap_or(""),
                marker,
            },
            width,
        );
        let tz = &s.prefs.tz;
        let day_break = i == 0 || day_of(s.messages[i - 1].ts, tz) != day_of(m.ts, tz);
        if day_break {
            msg_lines.insert(
                0,
                Line::styled(
                    format!("── {} ──", day_of(m.ts, tz)),
                    Style::default().fg(Color::DarkGray),
                )
                .alignment(Alignment::Center),
            );
        }
        for l in msg_lines.into_iter().rev() {
            if produced >= skip && lines.len() < inner_h {
                lines.push(l);
            }
            produced += 1;
        }
    }
    lines.reverse();
    if lines.is_empty() {
        lines.push(Line::styled(
            "no messages yet",
            Style::default().fg(Color::DarkGray),
        ));
    }
    let t = match (s.scroll, s.new_below) {
        (0, _) => title,
        (up, 0) => format!("{title} · ↑{up}"),
        (up, new) => format!("{title} · ↑{up} · {new} new below: End"),
    };
    f.render_widget(
        Paragraph::new(lines).block(block(&t, s.focus == Focus::Messages, s.prefs.accent)),
        area,
    );
}

/// One message's parts, as drawn.
struct MessageParts<'a> {
    time: String,
    name: &'a str,
    name_style: Style,
    text: &'a str,
    marker: &'static str,
}

/// A message as rows of at most `width` columns: time, name and the text on the first
/// row, the rest of it (wrapped lines and its own line breaks) indented under the name.
fn message_rows(m: MessageParts<'_>, width: usize) -> Vec<Line<'static>> {
    let indent = m.time.chars().count() + 1;
    let head = indent + m.name.chars().map(editor::char_width).sum::<usize>() + 2;
    let rest = width.saturating_sub(indent).max(10);
    let pad = " ".repeat(indent);
    let mut rows = vec![];
    for (n, line) in m.text.split('\n').enumerate() {
        let mut pieces: Vec<&str> = vec![];
        let tail = if n == 0 {
            // The first row has the time and the name before the text.
            let (_, to) = editor::wrap_offsets(line, width.saturating_sub(head).max(10))[0];
            pieces.push(&line[..to]);
            &line[to..]
        } else {
            line
        };
        if n > 0 || !tail.is_empty() {
            for (a, b) in editor::wrap_offsets(tail, rest) {
                pieces.push(&tail[a..b]);
            }
        }
        for (k, piece) in pieces.into_iter().enumerate() {
            if n == 0 && k == 0 {
                rows.push(Line::from(vec![
                    Span::styled(m.time.clone(), Style::default().fg(Color::DarkGray)),
                    Span::raw(" "),
                    Span::styled(m.name.to_string(), m.name_style),
                    Span::raw(format!(": {piece}")),
                ]));
            } else {
                rows.push(Line::raw(format!("{pad}{piece}")));
            }
        }
    }
    if let Some(last) = rows.last_mut() {
        last.push_span(Span::styled(m.marker, Style::default().fg(Color::Yellow)));
    }
    rows
}

fn render_status(s: &State, f: &mut Frame, area: Rect) {
    let mut sync: Vec<String> = s
        .contacts
        .iter()
        .map(|c| {
            let name = &c.contact.person.name;
            let pid = c.contact.person_id();
            match c.state {
                PeerState::Connected => match c.behind {
                    Some(n) if n > 0 => format!("{name}: {n} behind"),
                    _ if s.synced.iter().any(|p| *p == pid) => format!("{name}: caught up"),
                    _ => format!("{name}: syncing"),
                },
                PeerState::Connecting => format!("{name}: connecting"),
                PeerState::ViaHome => format!("{name}: away; their home node holds what you send"),
                PeerState::Offline if c.refused_us.is_some() => format!(
                    "{name}: waiting for them to add your card (they said: {})",
                    c.refused_us.as_deref().unwrap_or_default()
                ),
                PeerState::Offline => match c.last_seen {
                    Some(t) => format!(
                        "{name}: offline since {}",
                        time_of(t * 1000, s.prefs.time_format, &s.prefs.tz)
                    ),
                    None => format!("{name}: offline"),
                },
            }
        })
        .collect();
    if sync.is_empty() {
        sync.push("no peers".into());
    }
    let notice = s
        .notice
        .as_ref()
        .filter(|(_, until)| s.now < *until)
        .map(|(n, _)| format!("  ✓ {n}"))
        .unwrap_or_default();
    let first = Line::from(vec![
        Span::raw(sync.join(" · ")),
        Span::styled(notice, Style::default().fg(Color::Green)),
        Span::styled(
            s.last_error
                .as_ref()
                .map(|e| format!("  ⚠ {e}"))
                .unwrap_or_default(),
            Style::default().fg(Color::Red),
        ),
    ]);
    let second = Line::styled(key_hints(s), Style::default().fg(Color::DarkGray));
    f.render_widget(Paragraph::new(vec![first, second]), area);
}
