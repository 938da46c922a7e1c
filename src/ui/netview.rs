//! The network view popup: where this instance can be reached, and for every contact each
//! known address with where it came from, what the dialer is doing with it, the last
//! success and round trip, the last error in words and the next retry. Refreshed each
//! second while open (`update` asks on every tick).

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use crate::app::runtime::{ContactNet, EndpointView, NetView, Role, SelfNet};
use crate::domain::text::printable;
use crate::domain::{EndpointState, Reach};
use crate::ui::state::State;
use crate::ui::widgets::{block, day_of, time_of};

/// Widest the popup gets; narrower terminals get their whole width (the title row and
/// the footer stay visible).
const MAX_WIDTH: u16 = 110;
/// Indent of an address's detail lines.
const DETAIL: &str = "      ";

/// The popup's frame in a terminal of `size`.
fn frame(size: Rect) -> Rect {
    let w = size.width.min(MAX_WIDTH);
    let h = size.height.saturating_sub(2);
    Rect::new(size.x + (size.width - w) / 2, size.y + 1, w, h)
}

/// Lines of the view (for scrolling: keys clamp to it).
pub fn line_count(s: &State) -> u16 {
    let width = frame(Rect::new(0, 0, s.size.0, s.size.1))
        .width
        .saturating_sub(2);
    u16::try_from(lines(s, width).len()).unwrap_or(u16::MAX)
}

/// Draw the view over `area`, scrolled down `scroll` lines.
pub fn render(s: &State, scroll: u16, f: &mut Frame, area: Rect) {
    let mut r = frame(area);
    let body = lines(s, r.width.saturating_sub(2));
    let tall = u16::try_from(body.len() + 2).unwrap_or(u16::MAX);
    r.height = r.height.min(tall);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(body)
            .scroll((scroll, 0))
            .block(block("network", true, s.prefs.accent)),
        r,
    );
}

fn lines(s: &State, width: u16) -> Vec<Line<'static>> {
    let Some(v) = &s.network else {
        return vec![Line::raw(" looking…")];
    };
    let mut out = self_lines(s, &v.me);
    out.push(Line::raw(""));
    if v.contacts.is_empty() {
        out.push(Line::raw(" no contacts yet: nobody to reach"));
    }
    for c in &v.contacts {
        contact_lines(s, v, c, usize::from(width), &mut out);
    }
    out
}

fn label(text: &str) -> Span<'static> {
    Span::styled(format!(" {text:<14}"), Style::default().fg(Color::DarkGray))
}

fn self_lines(s: &State, me: &SelfNet) -> Vec<Line<'static>> {
    let discovery = match me.discovery {
        "local" => "local discovery on (this machine)",
        "lan" => "local discovery on (local network)",
        _ => "local discovery off",
    };
    let mut out = vec![Line::from(vec![
        Span::styled(
            " this instance ",
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!("{} · {discovery}", me.role.as_str()),
            Style::default().fg(s.prefs.accent),
        ),
    ])];
    if let Some(l) = &me.listening {
        out.push(Line::from(vec![label("listening"), Span::raw(l.clone())]));
    }
    if me.urls.is_empty() {
        let what = "nothing: a client only dials out";
        out.push(Line::from(vec![label("gives out"), Span::raw(what)]));
    }
    for (url, reach) in &me.urls {
        let (words, colour) = match reach {
            Reach::ThisMachine => ("this machine only: set --public-url", Color::Yellow),
            Reach::LocalNetwork => ("machines on the local network", Color::Reset),
            Reach::Network => ("the network", Color::Reset),
        };
        out.push(Line::from(vec![
            label("gives out"),
            Span::raw(format!("{}  ", printable(url))),
            Span::styled(words, Style::default().fg(colour)),
        ]));
    }
    let home = match &me.home_node {
        Some(h) => printable(&h.name),
        None if me.role == Role::Node => "none (this is a node)".into(),
        None => "none: start with --provision-node to have one".into(),
    };
    out.push(Line::from(vec![label("home node"), Span::raw(home)]));
    out
}

fn endpoint_mark(state: EndpointState) -> Span<'static> {
    let (mark, colour) = match state {
        EndpointState::Connected => ("●", Color::Green),
        EndpointState::Dialing => ("◐", Color::Yellow),
        EndpointState::Waiting => ("○", Color::Yellow),
        EndpointState::Idle => ("○", Color::DarkGray),
        EndpointState::Stale => ("×", Color::DarkGray),
    };
    Span::styled(mark, Style::default().fg(colour))
}

/// `HH:MM`, with the date when it is not today.
fn when(s: &State, secs: u64) -> String {
    let tz = &s.prefs.tz;
    let t = time_of(secs * 1000, s.prefs.time_format, tz);
    let day = day_of(secs * 1000, tz);
    if day == day_of(s.now * 1000, tz) {
        t
    } else {
        format!("{day} {t}")
    }
}

fn contact_lines(
    s: &State,
    v: &NetView,
    c: &ContactNet,
    width: usize,
    out: &mut Vec<Line<'static>>,
) {
    let home = v.me.home_node.as_ref().map(|h| &h.person_id) == Some(&c.person_id);
    out.push(Line::from(vec![
        Span::raw(" "),
        crate::ui::widgets::dot(c.state),
        Span::styled(
            format!(" {}", printable(&c.name)),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "  {}{}",
            c.state.as_str(),
            if home { " · our home node" } else { "" }
        )),
    ]));
    if c.endpoints.is_empty() {
        let why = "   no address: it dials us (a client), or we wait for its profile";
        out.push(Line::styled(why, Style::default().fg(Color::DarkGray)));
    }
    for e in &c.endpoints {
        endpoint_lines(s, e, width, out);
    }
}

fn endpoint_lines(s: &State, e: &EndpointView, width: usize, out: &mut Vec<Line<'static>>) {
    let status = match e.state {
        EndpointState::Waiting => match e.next_retry_at {
            Some(t) if t > s.now => format!("waiting · retry in {} s", t - s.now),
            _ => "waiting · retry now".into(),
        },
        EndpointState::Stale => match e.note.stale_since {
            Some(t) => format!("stale since {} · not dialed", when(s, t)),
            None => "stale · not dialed".into(),
        },
        other => other.as_str().into(),
    };
    let rtt = e
        .rtt_ms
        .map(|r| format!(" · rtt {r} ms"))
        .unwrap_or_default();
    out.push(Line::from(vec![
        Span::raw("   "),
        endpoint_mark(e.state),
        Span::raw(format!(" {}  ", printable(&e.note.url))),
        Span::raw(format!("{status}{rtt}")),
    ]));
    let ok = match e.last_ok {
        Some(t) => format!("last ok {}", when(s, t)),
        None => "not reached this run".into(),
    };
    out.push(Line::styled(
        format!(
            "{DETAIL}from {} {} · {ok}",
            e.note.source,
            when(s, e.note.learned_at)
        ),
        Style::default().fg(Color::DarkGray),
    ));
    if let Some(err) = &e.last_error {
        let text = format!("error: {}", printable(err));
        let room = width.saturating_sub(DETAIL.len()).max(20);
        for row in wrap(&text, room) {
            out.push(Line::styled(
                format!("{DETAIL}{row}"),
                Style::default().fg(Color::Red),
            ));
        }
    }
}

/// `text` in rows of at most `room` columns, broken at spaces where it can be (the
/// composer's wrapping, `editor::wrap_offsets`), without the spaces at the breaks.
fn wrap(text: &str, room: usize) -> Vec<String> {
    crate::ui::editor::wrap_offsets(text, room)
        .into_iter()
        .map(|(a, b)| text[a..b].trim_end().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrap_breaks_at_spaces_and_cuts_only_long_words() {
        assert_eq!(
            super::wrap("connection refused (os error 111)", 12),
            ["connection", "refused (os", "error 111)"]
        );
        assert_eq!(super::wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(super::wrap("short", 40), ["short"]);
    }
}
