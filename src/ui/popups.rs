//! The popups, one drawing function each; the screen under them is drawn by `view`.

use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::runtime::{CodeReach, NewInvite};
use crate::domain::identity::short_id;
use crate::ui::qr::{qr_half_blocks, qr_modules};
use crate::ui::state::{AcceptStatus, InputCheck, Popup, State};
use crate::ui::widgets::{block, centered, day_of, time_of, CODE_ROW};

/// Draw the open popup over the screen: one function per popup.
pub fn render_popup(s: &State, p: &Popup, f: &mut Frame, area: Rect) {
    match p {
        Popup::Help => help(s, f, area),
        Popup::Pairing(inv) => pairing(s, inv, f, area),
        Popup::Accept { input, status } => accept(s, input, status, f, area),
        Popup::Card { input, status } => card(s, input, status, f, area),
        Popup::ConfirmRemove(pid, name) => confirm_remove(s, pid, name, f, area),
        Popup::NewGroup {
            name,
            picked,
            cursor,
            on_members,
        } => new_group(s, (name, picked, *cursor, *on_members), f, area),
        Popup::Members => members(s, f, area),
        Popup::Paired { name, verification } => paired(s, name, verification, f, area),
        Popup::ContactInfo => contact_info(s, f, area),
        Popup::Network { scroll } => crate::ui::netview::render(s, *scroll, f, area),
    }
}

/// The key bindings.
fn help(s: &State, f: &mut Frame, area: Rect) {
    let k = |a: &str| s.prefs.keys.key(a);
    let rows = [
        "Tab / Shift-Tab   move focus".to_string(),
        "↑ ↓ / j k         move, scroll".into(),
        "Enter             open contact or channel; send".into(),
        "Alt-Enter         new line in a message".into(),
        "Up (empty line)   recall a sent line".into(),
        "PgUp / PgDn       scroll the history".into(),
        format!(
            "{}                 pairing: invitation QR and code (node)",
            k("pair")
        ),
        format!(
            "{}                 accept a code (paste, or Ctrl-V)",
            k("accept")
        ),
        "  on it           c copy, n new code, ↑↓ and r revoke".into(),
        format!("{}                 contact details", k("contact_info")),
        format!(
            "{}                 network: addresses, dials and their errors",
            k("network")
        ),
        format!(
            "{} / {}             export our contact card / import one",
            k("export_card"),
            k("import_card")
        ),
        format!(
            "{}                 remove the selected contact (asks first)",
            k("remove_contact")
        ),
        format!("{}                 new group channel", k("new_group")),
        format!("{}                 a channel's members", k("members")),
        format!("{}                 this help", k("help")),
        "Esc               close a popup".into(),
        format!(
            "{} / Ctrl-C        quit (in the composer: Ctrl-C)",
            k("quit")
        ),
        "mouse             wheel scrolls, click focuses".into(),
    ];
    let r = centered(area, 62, rows.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(rows.into_iter().map(Line::raw).collect::<Vec<_>>()).block(block(
            "keys",
            true,
            s.prefs.accent,
        )),
        r,
    );
}

/// Our invitation as a QR code and text, its countdown, the short code, and the open
/// invitations.
fn pairing(s: &State, inv: &Option<NewInvite>, f: &mut Frame, area: Rect) {
    let r = centered(area, area.width, area.height);
    f.render_widget(Clear, r);
    let mut text: Vec<Line> = Vec::new();
    let mut qr: Vec<Line> = Vec::new();
    match inv {
        None => text.push(Line::raw("looking for an open invitation…")),
        Some(inv) => {
            qr = qr_lines(inv);
            text.extend(invite_lines(s, inv));
            text.extend(short_code_lines(s));
        }
    }
    let keys = [
        Line::raw(""),
        centred_line(
            "c copy the code · n new code · ↑↓ pick · r revoke · Esc close".into(),
            Style::default().fg(Color::DarkGray),
        ),
    ];
    // What matters first: the text code, the short code and the keys; then the QR; then
    // the list of open codes, each only when it fits (an 80x24 terminal gets the text).
    let room = usize::from(r.height.saturating_sub(2));
    let list = open_invite_lines(s);
    let mut used = text.len() + keys.len();
    let mut lines = vec![];
    if used + qr.len() <= room {
        used += qr.len();
        lines = qr;
    }
    lines.extend(text);
    if used + list.len() <= room {
        lines.extend(list);
    }
    lines.extend(keys);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(
                "pair: scan or paste this code on the client",
                true,
                s.prefs.accent,
            )),
        r,
    );
}

fn centred_line(text: String, style: Style) -> Line<'static> {
    Line::styled(text, style).alignment(Alignment::Center)
}

/// "expires in M:SS", or what to do once it has.
fn countdown(left: u64, running: impl Fn(u64) -> String) -> Line<'static> {
    let text = if left == 0 {
        "expired: press n for a new one".to_string()
    } else {
        running(left)
    };
    centred_line(text, Style::default().fg(Color::Yellow))
}

/// The QR code with its quiet zone, in explicit colours (a light terminal background would
/// otherwise invert it).
fn qr_lines(inv: &NewInvite) -> Vec<Line<'static>> {
    let Ok((w, m)) = qr_modules(&inv.code) else {
        return vec![];
    };
    // The half blocks draw the light modules: white glyphs on black, never the terminal's
    // own colours.
    let style = Style::default().fg(Color::White).bg(Color::Black);
    qr_half_blocks(w, &m, 2)
        .into_iter()
        .map(|l| centred_line(l, style))
        .collect()
}

/// The text code in fixed-width rows, and its countdown.
fn invite_lines(s: &State, inv: &NewInvite) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    // Fixed-width rows: readable, and a copy of them pastes back whole (the decoder
    // ignores line breaks).
    for chunk in inv.code.as_bytes().chunks(CODE_ROW) {
        let row = String::from_utf8_lossy(chunk).into_owned();
        lines.push(centred_line(row, Style::default()));
    }
    let left = inv.expires_at.saturating_sub(s.now);
    lines.push(countdown(left, |l| {
        format!("expires in {}:{:02}", l / 60, l % 60)
    }));
    if inv.reach == CodeReach::Local {
        // Said before anyone walks to another machine with it.
        lines.push(centred_line(
            "works only on this machine: the node listens on loopback".into(),
            Style::default().fg(Color::Yellow),
        ));
    }
    lines
}

/// The short code to read out, and its countdown.
fn short_code_lines(s: &State) -> Vec<Line<'static>> {
    let Some(sc) = &s.short_code else {
        return vec![];
    };
    let left = sc.expires_at.saturating_sub(s.now);
    // The client dials ws://localhost:8765 unless told otherwise: say what to add (a
    // client's code is said to its home node).
    let hint = match sc.url.as_deref().or(s.me.endpoint.as_deref()) {
        Some(crate::app::cli::DEFAULT_NODE_URL) | None => {
            "or read this short code out (same machine: no address needed)".to_string()
        }
        Some(url) => format!("or read this short code out; the client types it, then {url}"),
    };
    vec![
        Line::raw(""),
        centred_line(hint, Style::default().fg(Color::DarkGray)),
        centred_line(
            sc.code.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        countdown(left, |l| {
            format!("{}:{:02} left · 3 wrong tries destroy it", l / 60, l % 60)
        }),
    ]
}

/// The open invitations, the selected one marked (r revokes it).
fn open_invite_lines(s: &State) -> Vec<Line<'static>> {
    let open = s.open_invites();
    if open.is_empty() {
        return vec![];
    }
    let head = format!(
        "open invitations: {} (r revokes the selected one)",
        open.len()
    );
    let mut lines = vec![
        Line::raw(""),
        centred_line(head, Style::default().fg(Color::DarkGray)),
    ];
    // A window of the list that follows the selection: what r revokes is on screen.
    const SHOWN: usize = 4;
    let first = s.invite_sel.saturating_sub(SHOWN - 1);
    for (i, row) in open.iter().enumerate().skip(first).take(SHOWN) {
        let left = row.expires_at.saturating_sub(s.now);
        // Every code starts alike (LAMA1AEA…): its end tells them apart.
        let name = match row.code.strip_prefix("LAMA1") {
            Some(_) => format!("code …{}", &row.code[row.code.len().saturating_sub(10)..]),
            None => format!("short code {}", row.code),
        };
        let l = format!("{name}  {}:{:02} left", left / 60, left % 60);
        let style = if i == s.invite_sel {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        lines.push(centred_line(l, style));
    }
    lines
}

/// Our code was used: who paired, and the digits both sides compare.
fn paired(s: &State, name: &str, verification: &str, f: &mut Frame, area: Rect) {
    let lines = vec![
        Line::raw(""),
        centred_line(
            format!("paired with {name} ✓"),
            Style::default()
                .fg(Color::Green)
                .add_modifier(Modifier::BOLD),
        ),
        Line::raw(""),
        centred_line(
            format!("verification {verification}"),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        centred_line(
            "compare it with theirs: the same digits mean no one is in between".into(),
            Style::default().fg(Color::DarkGray),
        ),
        Line::raw(""),
        centred_line("Enter closes".into(), Style::default().fg(Color::DarkGray)),
    ];
    let r = centered(area, 72, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(block("paired", true, s.prefs.accent)),
        r,
    );
}

/// The accept dialog: the typed code and what the live check says of it.
fn accept(s: &State, input: &str, status: &AcceptStatus, f: &mut Frame, area: Rect) {
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
    // As tall as the code and the message need, so neither is ever cut.
    let width = area.width.saturating_sub(4).min(96);
    let inner = usize::from(width.saturating_sub(2)).max(1);
    let rows = |t: &str| t.chars().count().div_ceil(inner).max(1);
    let height = u16::try_from(rows(input) + 1 + rows(&msg) + 2).unwrap_or(u16::MAX);
    let r = centered(area, width, height);
    f.render_widget(Clear, r);
    let shown = if matches!(status, AcceptStatus::Editing(_)) {
        with_cursor(input, s.field_cursor)
    } else {
        input.to_string()
    };
    let lines = vec![
        Line::raw(shown),
        Line::raw(""),
        Line::styled(msg, Style::default().fg(style)),
    ];
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(
                "accept an invitation or a short code",
                true,
                s.prefs.accent,
            )),
        r,
    );
}

/// A dialog field with its cursor marked (`None`: at the end).
fn with_cursor(input: &str, cursor: Option<usize>) -> String {
    let at = cursor
        .filter(|c| *c <= input.len() && input.is_char_boundary(*c))
        .unwrap_or(input.len());
    format!("{}▏{}", &input[..at], &input[at..])
}

/// Importing a contact card.
fn card(s: &State, input: &str, status: &Option<String>, f: &mut Frame, area: Rect) {
    let r = centered(area, 76, 10);
    f.render_widget(Clear, r);
    let lines = vec![
        Line::raw(with_cursor(input, s.field_cursor)),
        Line::raw(""),
        Line::styled(
            status
                .clone()
                .unwrap_or_else(|| "paste the other side's LAMA1… card (e exports ours)".into()),
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
            .block(block("import a contact card", true, s.prefs.accent)),
        r,
    );
}

/// Asking before a contact is removed.
fn confirm_remove(s: &State, pid: &str, name: &str, f: &mut Frame, area: Rect) {
    let r = centered(area, 70, 5);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(vec![
            Line::raw(format!(
                "Remove {name} ({}) from your contacts?",
                short_id(pid)
            )),
            Line::raw("Shared channels and their history stay. y removes, any other key keeps."),
        ])
        .wrap(Wrap { trim: true })
        .block(block("remove contact", true, s.prefs.accent)),
        r,
    );
}

/// A new group channel: its name and members picked from the contacts.
fn new_group(s: &State, group: (&str, &[String], usize, bool), f: &mut Frame, area: Rect) {
    let (name, picked, cursor, on_members) = group;
    let mut lines = vec![
        Line::raw(format!("name: {name}{}", if on_members { "" } else { "▏" })),
        Line::raw(""),
        Line::styled(
            "members (Space picks):",
            Style::default().fg(Color::DarkGray),
        ),
    ];
    for (i, c) in s.contacts.iter().enumerate() {
        let pid = c.contact.person_id();
        let mark = if picked.iter().any(|p| *p == pid) {
            "[x]"
        } else {
            "[ ]"
        };
        let l = format!("{mark} {} {}", c.contact.person.name, short_id(&pid));
        lines.push(if on_members && i == cursor {
            Line::styled(l, Style::default().add_modifier(Modifier::REVERSED))
        } else {
            Line::raw(l)
        });
    }
    let r = centered(area, 60, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(block("new group channel", true, s.prefs.accent)),
        r,
    );
}

/// The members of the open channel.
fn members(s: &State, f: &mut Frame, area: Rect) {
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
                    .or_else(|| {
                        // Not our contact, but a member whose messages name them.
                        s.messages
                            .iter()
                            .find(|msg| msg.author == *m)
                            .map(|msg| format!("{} (not a contact)", msg.author_name))
                    })
                    .unwrap_or_else(|| "not a contact".into())
            };
            Line::raw(format!("{}  {name}", short_id(m)))
        })
        .collect();
    let r = centered(area, 60, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(block(
            &format!("members of {}", s.channel_name(c)),
            true,
            s.prefs.accent,
        )),
        r,
    );
}

/// The selected contact's details.
fn contact_info(s: &State, f: &mut Frame, area: Rect) {
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
                .map(|t| format!(
                    "{} {}",
                    day_of(t * 1000, &s.prefs.tz),
                    time_of(t * 1000, s.prefs.time_format, &s.prefs.tz)
                ))
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
    if let Some(why) = &c.refused_us {
        lines.push(Line::raw(format!(
            "waiting   for them to add your card (e copies it); they said: {why}"
        )));
    }
    for e in &c.contact.endpoints {
        lines.push(Line::raw(format!("endpoint  {}", e.url)));
    }
    let r = centered(area, 90, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(block("contact", true, s.prefs.accent)),
        r,
    );
}
