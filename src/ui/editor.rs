//! A text field with a cursor and the keys people's fingers know from readline and every
//! chat client: ← → Home End, word jumps (Ctrl-← →, Alt-b f), Ctrl-A E U W K, Backspace
//! and Delete at the cursor, and pasted text whose line breaks (CR from terminals) stay
//! line breaks. Pure; the composer and the accept dialog use it.

use crossterm::event::{KeyCode, KeyModifiers};
use unicode_width::UnicodeWidthChar;

/// Text and a cursor (a byte offset on a char boundary).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Editor {
    text: String,
    cursor: usize,
}

impl PartialEq<&str> for Editor {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl Editor {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Nothing typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The cursor's byte offset.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The cursor is at the end of its line.
    pub fn at_line_end(&self) -> bool {
        self.cursor == self.line_end()
    }

    /// Replace the text, the cursor at its end.
    pub fn set(&mut self, text: &str) {
        self.text = text.to_string();
        self.cursor = self.text.len();
    }

    /// Empty it.
    pub fn clear(&mut self) {
        self.set("");
    }

    /// Insert at the cursor.
    pub fn insert(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    /// Insert pasted text at the cursor: CR LF and lone CR (what terminals send between
    /// pasted lines) become LF.
    pub fn paste(&mut self, text: &str) {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        self.text.insert_str(self.cursor, &text);
        self.cursor += text.len();
    }

    fn prev(&self, at: usize) -> usize {
        self.text[..at]
            .char_indices()
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next(&self, at: usize) -> usize {
        self.text[at..]
            .chars()
            .next()
            .map_or(at, |c| at + c.len_utf8())
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }

    /// Start of the word before the cursor (readline's backward-word).
    fn word_left(&self) -> usize {
        let mut at = self.cursor;
        while at > 0 && !is_word(self.char_before(at)) {
            at = self.prev(at);
        }
        while at > 0 && is_word(self.char_before(at)) {
            at = self.prev(at);
        }
        at
    }

    /// End of the word after the cursor (forward-word).
    fn word_right(&self) -> usize {
        let mut at = self.cursor;
        let len = self.text.len();
        while at < len && !is_word(self.char_at(at)) {
            at = self.next(at);
        }
        while at < len && is_word(self.char_at(at)) {
            at = self.next(at);
        }
        at
    }

    fn char_before(&self, at: usize) -> char {
        self.text[..at].chars().next_back().unwrap_or(' ')
    }

    fn char_at(&self, at: usize) -> char {
        self.text[at..].chars().next().unwrap_or(' ')
    }

    /// Move to the same column on the line above (`up`) or below; `false` when there is
    /// no such line (the caller may use the key for something else).
    fn vertical(&mut self, up: bool) -> bool {
        let start = self.line_start();
        let col = self.text[start..self.cursor].chars().count();
        let (from, to) = if up {
            if start == 0 {
                return false;
            }
            let end = start - 1;
            (self.text[..end].rfind('\n').map_or(0, |i| i + 1), end)
        } else {
            let end = self.line_end();
            if end == self.text.len() {
                return false;
            }
            let next_end = self.text[end + 1..]
                .find('\n')
                .map_or(self.text.len(), |i| end + 1 + i);
            (end + 1, next_end)
        };
        self.cursor = self.text[from..to]
            .char_indices()
            .nth(col)
            .map_or(to, |(i, _)| from + i);
        true
    }

    /// Apply an editing key; `false` when the key is not one (the caller handles it).
    pub fn on_key(&mut self, code: KeyCode, mods: KeyModifiers) -> bool {
        let ctrl = mods.contains(KeyModifiers::CONTROL);
        let alt = mods.contains(KeyModifiers::ALT);
        match code {
            KeyCode::Char('a') if ctrl => self.cursor = self.line_start(),
            KeyCode::Char('e') if ctrl => self.cursor = self.line_end(),
            KeyCode::Char('b') if alt => self.cursor = self.word_left(),
            KeyCode::Char('f') if alt => self.cursor = self.word_right(),
            KeyCode::Char('u') if ctrl => {
                let start = self.line_start();
                self.text.replace_range(start..self.cursor, "");
                self.cursor = start;
            }
            KeyCode::Char('k') if ctrl => {
                let end = self.line_end();
                self.text.replace_range(self.cursor..end, "");
            }
            KeyCode::Char('w') if ctrl => self.delete_back_to(self.word_left()),
            KeyCode::Backspace if ctrl || alt => self.delete_back_to(self.word_left()),
            KeyCode::Char(_) if ctrl || alt => return false,
            KeyCode::Char(c) => self.insert(c),
            KeyCode::Left if ctrl => self.cursor = self.word_left(),
            KeyCode::Right if ctrl => self.cursor = self.word_right(),
            KeyCode::Left => self.cursor = self.prev(self.cursor),
            KeyCode::Right => self.cursor = self.next(self.cursor),
            KeyCode::Home => self.cursor = self.line_start(),
            KeyCode::End => self.cursor = self.line_end(),
            KeyCode::Up => return self.vertical(true),
            KeyCode::Down => return self.vertical(false),
            KeyCode::Backspace => self.delete_back_to(self.prev(self.cursor)),
            KeyCode::Delete => {
                let next = self.next(self.cursor);
                self.text.replace_range(self.cursor..next, "");
            }
            _ => return false,
        }
        true
    }

    fn delete_back_to(&mut self, at: usize) {
        self.text.replace_range(at..self.cursor, "");
        self.cursor = at;
    }

    /// The text as rows of at most `width` columns (lines wrapped at spaces where they
    /// can be), and the cursor's (row, column).
    pub fn layout(&self, width: usize) -> (Vec<String>, (usize, usize)) {
        let width = width.max(2);
        let mut rows = vec![];
        let mut cursor = (0, 0);
        let mut offset = 0;
        for line in self.text.split('\n') {
            let first = rows.len();
            let wrapped = wrap_offsets(line, width);
            for (k, (from, to)) in wrapped.iter().enumerate() {
                let (a, b) = (offset + from, offset + to);
                let last = k + 1 == wrapped.len();
                if self.cursor >= a && (self.cursor < b || (last && self.cursor == b)) {
                    let col = self.text[a..self.cursor].chars().map(char_width).sum();
                    cursor = (first + k, col);
                }
                rows.push(line[*from..*to].to_string());
            }
            offset += line.len() + 1;
        }
        (rows, cursor)
    }
}

/// A key in a one-line dialog field: the composer's editing keys (← → Home End, word
/// jumps, Ctrl-A E U W K, Backspace, Delete) on `input` with its `cursor` (`None`: at
/// the end); other Ctrl and Alt keys are not typed. `false` when the key is not one of
/// these (Enter, Up and Down are the dialog's).
pub fn field_key(
    input: &mut String,
    cursor: &mut Option<usize>,
    code: KeyCode,
    mods: KeyModifiers,
) -> bool {
    if matches!(code, KeyCode::Enter | KeyCode::Up | KeyCode::Down) {
        return false;
    }
    let mut e = Editor::default();
    e.set(input);
    if let Some(c) = *cursor {
        if c <= e.text.len() && e.text.is_char_boundary(c) {
            e.cursor = c;
        }
    }
    let handled = e.on_key(code, mods) || matches!(code, KeyCode::Char(_));
    *cursor = (e.cursor != e.text.len()).then_some(e.cursor);
    *input = e.text;
    handled
}

/// Paste into a one-line dialog field at its cursor (surrounding whitespace dropped).
pub fn field_paste(input: &mut String, cursor: &mut Option<usize>, text: &str) {
    let at = cursor
        .filter(|c| *c <= input.len() && input.is_char_boundary(*c))
        .unwrap_or(input.len());
    let text = text.trim();
    input.insert_str(at, text);
    *cursor = (at + text.len() != input.len()).then_some(at + text.len());
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Display columns of `c` (control characters count as none: they are never drawn).
pub fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// Byte ranges of `line` wrapped to `width` columns, broken after a space where one is
/// in the row, else cut (a long word, a URL). An empty line is one empty row.
pub fn wrap_offsets(line: &str, width: usize) -> Vec<(usize, usize)> {
    let width = width.max(1);
    let mut rows = vec![];
    let mut start = 0;
    let mut cols = 0;
    let mut last_space = None;
    for (i, c) in line.char_indices() {
        let w = char_width(c);
        if cols + w > width && i > start {
            let cut = match last_space {
                Some(s) if s > start => s,
                _ => i,
            };
            rows.push((start, cut));
            start = cut;
            cols = line[start..i].chars().map(char_width).sum();
            last_space = None;
        }
        cols += w;
        if c == ' ' {
            last_space = Some(i + 1);
        }
    }
    rows.push((start, line.len()));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed(text: &str, cursor: usize) -> Editor {
        Editor {
            text: text.into(),
            cursor,
        }
    }

    fn key(e: &mut Editor, code: KeyCode, mods: KeyModifiers) {
        assert!(e.on_key(code, mods), "{code:?} {mods:?} is an editing key");
    }

    #[test]
    fn readline_keys_move_and_kill() {
        let ctrl = KeyModifiers::CONTROL;
        let mut e = ed("hello big world", 15);
        key(&mut e, KeyCode::Char('w'), ctrl);
        assert_eq!(e, "hello big ");
        key(&mut e, KeyCode::Char('a'), ctrl);
        assert_eq!(e.cursor(), 0);
        key(&mut e, KeyCode::Right, ctrl);
        assert_eq!(e.cursor(), 5);
        key(&mut e, KeyCode::Char('k'), ctrl);
        assert_eq!(e, "hello");
        key(&mut e, KeyCode::Char('x'), KeyModifiers::NONE);
        key(&mut e, KeyCode::Home, KeyModifiers::NONE);
        key(&mut e, KeyCode::Delete, KeyModifiers::NONE);
        assert_eq!(e, "ellox");
        key(&mut e, KeyCode::Char('e'), ctrl);
        key(&mut e, KeyCode::Char('u'), ctrl);
        assert_eq!(e, "");
        // Ctrl with other letters is not typed.
        assert!(!e.on_key(KeyCode::Char('z'), ctrl));
        assert_eq!(e, "");
    }

    #[test]
    fn lines_move_by_column_and_paste_keeps_breaks() {
        let mut e = Editor::default();
        e.paste("first line\rsecond\r\nthird");
        assert_eq!(e, "first line\nsecond\nthird");
        key(&mut e, KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(e.cursor(), "first line\n".len() + 5);
        key(&mut e, KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(e.cursor(), 5);
        assert!(!e.on_key(KeyCode::Up, KeyModifiers::NONE), "no line above");
        e.insert('é');
        key(&mut e, KeyCode::Backspace, KeyModifiers::NONE);
        key(&mut e, KeyCode::Left, KeyModifiers::NONE);
        assert_eq!(e.cursor(), 4);
    }

    #[test]
    fn layout_wraps_at_spaces_and_finds_the_cursor() {
        let e = ed("one two three\nfour", 12);
        let (rows, cur) = e.layout(8);
        assert_eq!(rows, ["one two ", "three", "four"]);
        assert_eq!(cur, (1, 4));
        let (rows, cur) = ed("abcdefghij", 10).layout(4);
        assert_eq!(rows, ["abcd", "efgh", "ij"]);
        assert_eq!(cur, (2, 2));
        assert_eq!(ed("", 0).layout(5), (vec![String::new()], (0, 0)));
    }

    #[test]
    fn dialog_fields_edit_like_the_composer_and_never_type_control_letters() {
        let (ctrl, none) = (KeyModifiers::CONTROL, KeyModifiers::NONE);
        let mut f = String::from("LAMA1 abc");
        let mut cur = None;
        assert!(field_key(&mut f, &mut cur, KeyCode::Char('w'), ctrl));
        assert_eq!(f, "LAMA1 ");
        assert!(field_key(&mut f, &mut cur, KeyCode::Char('a'), ctrl));
        assert_eq!(
            (f.as_str(), cur),
            ("LAMA1 ", Some(0)),
            "Ctrl-A moves, is not typed"
        );
        assert!(field_key(&mut f, &mut cur, KeyCode::Char('x'), none));
        assert_eq!(f, "xLAMA1 ");
        assert!(field_key(&mut f, &mut cur, KeyCode::Char('k'), ctrl));
        assert_eq!((f.as_str(), cur), ("x", None));
        field_paste(&mut f, &mut cur, "  yz \n");
        assert_eq!(f, "xyz");
        assert!(field_key(&mut f, &mut cur, KeyCode::Char('u'), ctrl));
        assert_eq!(f, "");
        assert!(!field_key(&mut f, &mut cur, KeyCode::Enter, none));
        assert!(field_key(
            &mut f,
            &mut cur,
            KeyCode::Char('q'),
            KeyModifiers::ALT
        ));
        assert_eq!(f, "", "Alt letters are not typed");
    }
}
