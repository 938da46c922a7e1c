//! Small pieces both the screen and the popups draw with: bordered blocks, centring,
//! dates and times.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders};

use crate::app::runtime::PeerState;

/// Characters per row when a code is printed.
pub const CODE_ROW: usize = 48;

/// The civil date and time of unix milliseconds in `tz`.
fn civil(ms: u64, tz: &TimeZone) -> jiff::civil::DateTime {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    // Out of jiff's range (year 9999): the latest time it can show.
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::MAX);
    tz.to_datetime(ts)
}

/// `YYYY-MM-DD` of unix milliseconds in `tz`.
pub fn day_of(ms: u64, tz: &TimeZone) -> String {
    let d = civil(ms, tz);
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// The time of day of unix milliseconds in `tz`, in the chosen format.
pub fn time_of(ms: u64, format: TimeFormat, tz: &TimeZone) -> String {
    let d = civil(ms, tz);
    let (h, m, sec) = (d.hour(), d.minute(), d.second());
    match format {
        TimeFormat::H24 => format!("{h:02}:{m:02}"),
        TimeFormat::H24Seconds => format!("{h:02}:{m:02}:{sec:02}"),
        TimeFormat::H12 => {
            let half = if h < 12 { "am" } else { "pm" };
            let h12 = if h % 12 == 0 { 12 } else { h % 12 };
            format!("{h12}:{m:02}{half}")
        }
    }
}

pub fn block(title: &str, focused: bool, accent: Color) -> Block<'_> {
    let b = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {title} "));
    if focused {
        b.border_style(Style::default().fg(accent))
    } else {
        b
    }
}

pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

pub use crate::domain::text::is_unsafe;

use crate::app::config::TimeFormat;
use jiff::tz::TimeZone;

/// Strip unsafe characters from every cell of a drawn frame: the one place all text passes
/// (names, messages, endpoints, popups), so nothing untrusted reaches the terminal whatever
/// widget drew it.
pub fn scrub(buf: &mut Buffer) {
    for cell in buf.content.iter_mut() {
        if cell.symbol().chars().any(is_unsafe) {
            let kept: String = cell.symbol().chars().filter(|c| !is_unsafe(*c)).collect();
            cell.set_symbol(if kept.is_empty() { " " } else { &kept });
        }
    }
}

/// A contact's state as one glyph: linked, dialing, reached through its home node, or not.
pub(crate) fn dot(s: PeerState) -> Span<'static> {
    match s {
        PeerState::Connected => Span::styled("●", Style::default().fg(Color::Green)),
        PeerState::Connecting => Span::styled("◐", Style::default().fg(Color::Yellow)),
        PeerState::ViaHome => Span::styled("◑", Style::default().fg(Color::Cyan)),
        PeerState::Offline => Span::styled("○", Style::default().fg(Color::DarkGray)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_each_format() {
        let ms = (13 * 3600 + 5 * 60 + 9) * 1000;
        let utc = TimeZone::UTC;
        assert_eq!(time_of(ms, TimeFormat::H24, &utc), "13:05");
        assert_eq!(time_of(ms, TimeFormat::H24Seconds, &utc), "13:05:09");
        assert_eq!(time_of(ms, TimeFormat::H12, &utc), "1:05pm");
        assert_eq!(time_of(5 * 60 * 1000, TimeFormat::H12, &utc), "12:05am");
    }

    #[test]
    fn times_and_days_are_local() {
        // 2027-01-15 00:30 UTC is still the 14th, 19:30, in New York (UTC-5 in winter)
        // and the 15th, 09:30, in Tokyo (UTC+9). A fixed offset: no tz database needed.
        let ms = 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000 + 30 * 60 * 1000;
        let ny = TimeZone::fixed(jiff::tz::offset(-5));
        let tokyo = TimeZone::fixed(jiff::tz::offset(9));
        assert_eq!(day_of(ms, &TimeZone::UTC), "2027-01-15");
        assert_eq!(day_of(ms, &ny), "2027-01-14");
        assert_eq!(time_of(ms, TimeFormat::H24, &ny), "19:30");
        assert_eq!(time_of(ms, TimeFormat::H24, &tokyo), "09:30");
    }

    #[test]
    fn scrub_removes_what_a_widget_let_through() {
        // Widgets may put any symbol in a cell (`set_symbol` takes it as is).
        let mut buf = Buffer::empty(Rect::new(0, 0, 4, 1));
        buf.content[0].set_symbol("a\u{202e}");
        buf.content[1].set_symbol("\u{2067}");
        buf.content[2].set_symbol("\x1b");
        buf.content[3].set_symbol("é");
        scrub(&mut buf);
        let syms: Vec<&str> = buf.content.iter().map(|c| c.symbol()).collect();
        assert_eq!(syms, ["a", " ", " ", "é"]);
    }
}
