//! Rendering: a pure function of [`State`] into a ratatui frame.

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::runtime::PeerState;
use crate::domain::identity::short_id;
use crate::ui::qr::{qr_half_blocks, qr_modules};
use crate::ui::state::{key_hints, AcceptStatus, Focus, InputCheck, Popup, State, SIDE_WIDTH};

/// Smallest usable terminal.
pub const MIN_SIZE: (u16, u16) = (80, 24);
/// Characters per row when a code is printed.
pub const CODE_ROW: usize = 48;

/// Civil date (y, m, d) of a unix day number (Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` of unix milliseconds (UTC).
pub fn day_of(ms: u64) -> String {
    let (y, m, d) = civil((ms / 86_400_000) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM` of unix milliseconds (UTC).
pub fn time_of(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}", s / 3600, (s / 60) % 60)
}

fn dot(s: PeerState) -> Span<'static> {
    match s {
        PeerState::Connected => Span::styled("●", Style::default().fg(Color::Green)),
        PeerState::Connecting => Span::styled("◐", Style::default().fg(Color::Yellow)),
        PeerState::Offline => Span::styled("○", Style::default().fg(Color::DarkGray)),
    }
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

fn block(title: &str, focused: bool) -> Block<'_> {
    let b = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {title} "));
    if focused {
        b.border_style(Style::default().fg(Color::Cyan))
    } else {
        b
    }
}

/// Draw the whole screen.
pub fn render(s: &State, f: &mut Frame) {
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
    let composer_h = (s.composer.lines().count().max(1) as u16 + 2).min(6);
    let [msgs, composer] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(composer_h)]).areas(main);
    render_messages(s, f, msgs);
    let mut text = s.composer.clone();
    if s.focus == Focus::Composer && s.popup.is_none() {
        text.push('▏');
    }
    f.render_widget(
        Paragraph::new(text).block(block("message", s.focus == Focus::Composer)),
        composer,
    );
    render_status(s, f, status);
    if let Some(p) = &s.popup {
        render_popup(s, p, f, area);
    }
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
        Span::styled(s.me.role.as_str(), Style::default().fg(Color::Cyan)),
        Span::raw(format!(
            "  {}  ·  {connected}/{} contacts connected",
            s.me.endpoint.as_deref().unwrap_or("dial-out only"),
            s.contacts.len()
        )),
    ]);
    f.render_widget(Paragraph::new(line).block(block("lama-tui", false)), area);
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
                    ch.members.len() == 2 && ch.id.contains("<->") && ch.members.contains(&pid)
                })
                .map(|(_, n)| *n)
                .unwrap_or(0);
            let mut spans = vec![
                dot(c.state),
                Span::raw(format!(" {name} ")),
                Span::styled(
                    short_id(&pid).to_string(),
                    Style::default().fg(Color::DarkGray),
                ),
            ];
            spans.extend(unread_badge(unread));
            ListItem::new(Line::from(spans))
        })
        .collect();
    let empty = items.is_empty();
    let mut st = ListState::default().with_selected((!empty).then_some(s.contact_sel));
    let list = List::new(items)
        .block(block("contacts", s.focus == Focus::Contacts))
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
        .block(block("channels", s.focus == Focus::Channels))
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
    // Build lines bottom-up, only as many as fit: cost is independent of history size.
    let mut lines: Vec<Line> = Vec::with_capacity(inner_h + 2);
    let skip = s.scroll;
    let mut produced = 0usize;
    let mut i = s.messages.len();
    while i > 0 && lines.len() < inner_h {
        i -= 1;
        let m = &s.messages[i];
        let own = m.author == s.me.person_id;
        let mut msg_lines: Vec<Line> = Vec::new();
        let name_style = if own {
            Style::default()
                .fg(Color::Cyan)
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
        for (n, text) in m.text.as_deref().unwrap_or("").split('\n').enumerate() {
            if n == 0 {
                msg_lines.push(Line::from(vec![
                    Span::styled(time_of(m.ts), Style::default().fg(Color::DarkGray)),
                    Span::raw(" "),
                    Span::styled(m.author_name.clone(), name_style),
                    Span::raw(format!(": {text}")),
                    Span::styled(marker, Style::default().fg(Color::Yellow)),
                ]));
            } else {
                msg_lines.push(Line::raw(format!("      {text}")));
            }
        }
        let day_break = i == 0 || day_of(s.messages[i - 1].ts) != day_of(m.ts);
        if day_break {
            msg_lines.insert(
                0,
                Line::styled(
                    format!("── {} ──", day_of(m.ts)),
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
    let t = if s.scroll > 0 {
        format!("{title} · ↑{}", s.scroll)
    } else {
        title
    };
    f.render_widget(
        Paragraph::new(lines).block(block(&t, s.focus == Focus::Messages)),
        area,
    );
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
                    _ if s.synced.contains(&pid) => format!("{name}: caught up"),
                    _ => format!("{name}: syncing"),
                },
                PeerState::Connecting => format!("{name}: connecting"),
                PeerState::Offline => match c.last_seen {
                    Some(t) => format!("{name}: offline since {}", time_of(t * 1000)),
                    None => format!("{name}: offline"),
                },
            }
        })
        .collect();
    if sync.is_empty() {
        sync.push("no peers".into());
    }
    let first = Line::from(vec![
        Span::raw(sync.join(" · ")),
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

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn render_popup(s: &State, p: &Popup, f: &mut Frame, area: Rect) {
    match p {
        Popup::Help => {
            let rows = [
                "Tab / Shift-Tab   move focus",
                "↑ ↓ / j k         move, scroll",
                "Enter             open contact or channel; send",
                "Alt-Enter         new line in a message",
                "Up (empty line)   recall a sent line",
                "PgUp / PgDn       scroll the history",
                "p                 pairing: invitation QR and code (node)",
                "a                 accept a code (paste, or Ctrl-V)",
                "i                 contact details",
                "e / c             export our contact card / import one",
                "d                 remove the selected contact (asks first)",
                "g                 new group channel; m shows a channel's members",
                "?                 this help",
                "Esc               close a popup",
                "q / Ctrl-C        quit (in the composer: Ctrl-C)",
                "mouse             wheel scrolls, click focuses",
            ];
            let r = centered(area, 62, rows.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(rows.iter().map(|l| Line::raw(*l)).collect::<Vec<_>>())
                    .block(block("keys", true)),
                r,
            );
        }
        Popup::Pairing(inv) => {
            let r = centered(area, area.width, area.height);
            f.render_widget(Clear, r);
            let mut lines: Vec<Line> = Vec::new();
            match inv {
                None => lines.push(Line::raw("creating an invitation…")),
                Some(inv) => {
                    if let Ok((w, m)) = qr_modules(&inv.code) {
                        for l in qr_half_blocks(w, &m, 2) {
                            lines.push(Line::raw(l).alignment(Alignment::Center));
                        }
                    }
                    // Fixed-width rows: readable, and a copy of them pastes back whole
                    // (the decoder ignores line breaks).
                    for chunk in inv.code.as_bytes().chunks(CODE_ROW) {
                        let row = String::from_utf8_lossy(chunk).into_owned();
                        lines.push(Line::raw(row).alignment(Alignment::Center));
                    }
                    let left = inv.expires_at.saturating_sub(s.now);
                    let exp = if left == 0 {
                        "expired: press n for a new one".to_string()
                    } else {
                        format!("expires in {}:{:02}", left / 60, left % 60)
                    };
                    lines.push(
                        Line::styled(exp, Style::default().fg(Color::Yellow))
                            .alignment(Alignment::Center),
                    );
                    if let Some(sc) = &s.short_code {
                        let left = sc.expires_at.saturating_sub(s.now);
                        lines.push(Line::raw(""));
                        lines.push(
                            Line::styled(
                                "or read this short code out (same machine: no address needed)",
                                Style::default().fg(Color::DarkGray),
                            )
                            .alignment(Alignment::Center),
                        );
                        lines.push(
                            Line::styled(
                                sc.code.clone(),
                                Style::default().add_modifier(Modifier::BOLD),
                            )
                            .alignment(Alignment::Center),
                        );
                        let exp = if left == 0 {
                            "expired: press n for a new one".to_string()
                        } else {
                            format!(
                                "{}:{:02} left · 3 wrong tries destroy it",
                                left / 60,
                                left % 60
                            )
                        };
                        lines.push(
                            Line::styled(exp, Style::default().fg(Color::Yellow))
                                .alignment(Alignment::Center),
                        );
                    }
                }
            }
            let open: Vec<_> = s.invites.iter().filter(|r| r.status == "open").collect();
            if !open.is_empty() {
                lines.push(Line::raw(""));
                lines.push(
                    Line::styled(
                        format!(
                            "open invitations: {} (r revokes the selected one)",
                            open.len()
                        ),
                        Style::default().fg(Color::DarkGray),
                    )
                    .alignment(Alignment::Center),
                );
                for (i, row) in open.iter().enumerate().take(5) {
                    let left = row.expires_at.saturating_sub(s.now);
                    let l = format!(
                        "{}…  {}:{:02} left",
                        &row.code[..row.code.len().min(24)],
                        left / 60,
                        left % 60
                    );
                    let style = if i == s.invite_sel {
                        Style::default().add_modifier(Modifier::REVERSED)
                    } else {
                        Style::default()
                    };
                    lines.push(Line::styled(l, style).alignment(Alignment::Center));
                }
            }
            f.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .block(block("pair: scan or paste this code on the client", true)),
                r,
            );
        }
        Popup::Accept { input, status } => {
            let r = centered(area, 76, 10);
            f.render_widget(Clear, r);
            let (msg, style) = match status {
                AcceptStatus::Editing(InputCheck::Invite) => (
                    "code looks right: press Enter to pair".to_string(),
                    Color::Green,
                ),
                AcceptStatus::Editing(InputCheck::Short) => (
                    "short code looks right: press Enter to pair (add ws://host:port after it if the node is not on this machine)".to_string(),
                    Color::Green,
                ),
                AcceptStatus::Editing(InputCheck::Empty) => (
                    "paste the LAMA1… code (Ctrl-V reads the clipboard) or type the short code, e.g. 7-lunar-pepper-canal".to_string(),
                    Color::DarkGray,
                ),
                AcceptStatus::Editing(InputCheck::Bad(e)) => (e.clone(), Color::Red),
                AcceptStatus::Connecting => ("connecting and pairing…".to_string(), Color::Yellow),
                AcceptStatus::Done(p) => (
                    format!(
                        "paired with {} · verification {} (compare it on the node) · Enter",
                        p.name, p.verification
                    ),
                    Color::Green,
                ),
                AcceptStatus::Failed(e) => (e.clone(), Color::Red),
            };
            let lines = vec![
                Line::raw(input.clone()),
                Line::raw(""),
                Line::styled(msg, Style::default().fg(style)),
            ];
            f.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .block(block("accept an invitation or a short code", true)),
                r,
            );
        }
        Popup::Card { input, status } => {
            let r = centered(area, 76, 10);
            f.render_widget(Clear, r);
            let lines = vec![
                Line::raw(input.clone()),
                Line::raw(""),
                Line::styled(
                    status.clone().unwrap_or_else(|| {
                        "paste the other side's LAMA1… card (e exports ours)".into()
                    }),
                    Style::default().fg(if status.is_some() {
                        Color::Red
                    } else {
                        Color::DarkGray
                    }),
                ),
            ];
            f.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .block(block("import a contact card", true)),
                r,
            );
        }
        Popup::ConfirmRemove(pid, name) => {
            let r = centered(area, 70, 5);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(vec![
                    Line::raw(format!(
                        "Remove {name} ({}) from your contacts?",
                        short_id(pid)
                    )),
                    Line::raw(
                        "Shared channels and their history stay. y removes, any other key keeps.",
                    ),
                ])
                .wrap(Wrap { trim: true })
                .block(block("remove contact", true)),
                r,
            );
        }
        Popup::NewGroup {
            name,
            picked,
            cursor,
            on_members,
        } => {
            let mut lines = vec![
                Line::raw(format!(
                    "name: {name}{}",
                    if *on_members { "" } else { "▏" }
                )),
                Line::raw(""),
                Line::styled(
                    "members (Space picks):",
                    Style::default().fg(Color::DarkGray),
                ),
            ];
            for (i, c) in s.contacts.iter().enumerate() {
                let pid = c.contact.person_id();
                let mark = if picked.contains(&pid) { "[x]" } else { "[ ]" };
                let l = format!("{mark} {} {}", c.contact.person.name, short_id(&pid));
                lines.push(if *on_members && i == *cursor {
                    Line::styled(l, Style::default().add_modifier(Modifier::REVERSED))
                } else {
                    Line::raw(l)
                });
            }
            let r = centered(area, 60, lines.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines).block(block("new group channel", true)),
                r,
            );
        }
        Popup::Members => {
            let Some((c, _)) = s.channels.get(s.channel_sel) else {
                return;
            };
            let lines: Vec<Line> = c
                .members
                .iter()
                .map(|m| {
                    let name = if *m == s.me.person_id {
                        format!("{} (you)", s.me.name)
                    } else {
                        s.contacts
                            .iter()
                            .find(|v| v.contact.person_id() == *m)
                            .map(|v| v.contact.person.name.clone())
                            .unwrap_or_else(|| "not a contact".into())
                    };
                    Line::raw(format!("{}  {name}", short_id(m)))
                })
                .collect();
            let r = centered(area, 60, lines.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines)
                    .block(block(&format!("members of {}", s.channel_name(c)), true)),
                r,
            );
        }
        Popup::ContactInfo => {
            let Some(c) = s.contacts.get(s.contact_sel) else {
                return;
            };
            let mut lines = vec![
                Line::raw(format!("name      {}", c.contact.person.name)),
                Line::raw(format!("person    {}", c.contact.person_id())),
                Line::raw(format!("state     {}", c.state.as_str())),
                Line::raw(format!("verify    {}", c.verification)),
                Line::raw(format!(
                    "last seen {}",
                    c.last_seen
                        .map(|t| format!("{} {} UTC", day_of(t * 1000), time_of(t * 1000)))
                        .unwrap_or_else(|| "never".into())
                )),
                Line::raw(format!(
                    "via       {}{}",
                    c.contact.via,
                    if c.contact.replica {
                        " (our home node)"
                    } else {
                        ""
                    }
                )),
                Line::raw(format!(
                    "last err  {}",
                    c.last_error.as_deref().unwrap_or("none")
                )),
            ];
            for e in &c.contact.endpoints {
                lines.push(Line::raw(format!("endpoint  {}", e.url)));
            }
            let r = centered(area, 90, lines.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(Paragraph::new(lines).block(block("contact", true)), r);
        }
    }
}
