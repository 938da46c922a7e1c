//! Small pieces both the screen and the popups draw with: bordered blocks, centring,
//! dates and times.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, Borders};

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

/// The time of day of unix milliseconds (UTC) in the chosen format.
pub fn time_of(ms: u64, format: TimeFormat) -> String {
    let s = (ms / 1000) % 86_400;
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_each_format() {
        let ms = (13 * 3600 + 5 * 60 + 9) * 1000;
        assert_eq!(time_of(ms, TimeFormat::H24), "13:05");
        assert_eq!(time_of(ms, TimeFormat::H24Seconds), "13:05:09");
        assert_eq!(time_of(ms, TimeFormat::H12), "1:05pm");
        assert_eq!(time_of(5 * 60 * 1000, TimeFormat::H12), "12:05am");
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
