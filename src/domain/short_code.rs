//! Short codes: `N-word-word-word`, a number and three words from the 256-word list, to
//! read out over the phone; parsing forgives case and separators and suggests the word a
//! typo probably meant. The PAKE that checks them is in `net::pake`.

/// Words in a short code after its number.
pub const CODE_WORDS: usize = 3;
/// Highest short-code number (numbers run from 1).
pub const MAX_SLOT: u16 = 999;
/// Default short-code lifetime.
pub const DEFAULT_CODE_TTL_SECS: u64 = 300;
/// Longest short-code lifetime accepted from `ttl_secs`: a code is for reading aloud now.
pub const MAX_CODE_TTL_SECS: u64 = 3600;
static WORDLIST: &str = include_str!("../../assets/wordlist.txt");

/// The 256 code words, in file order (a word's index is its value).
pub fn wordlist() -> &'static [&'static str] {
    static WORDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| WORDLIST.lines().filter(|l| !l.is_empty()).collect())
}

/// Bits of secret in a short code: the words only (the number names the code and is not
/// secret).
pub fn code_entropy_bits() -> u32 {
    CODE_WORDS as u32 * (wordlist().len() as f64).log2() as u32
}

/// A short code: a number naming the code on its node, and secret words.
#[derive(Clone, PartialEq, Eq)]
pub struct ShortCode {
    /// Which open code on the node (1..=[`MAX_SLOT`]); not secret.
    pub slot: u16,
    words: [u8; CODE_WORDS],
}

impl std::fmt::Debug for ShortCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The words are the secret: they stay out of Debug output (and so out of logs).
        write!(f, "ShortCode({}-…)", self.slot)
    }
}

/// Why a typed short code cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShortCodeError {
    /// Nothing typed.
    #[error("no code given: type the short code the node shows, e.g. 7-lunar-pepper-canal")]
    Empty,
    /// The first part is not a number in range.
    #[error("a short code starts with its number (1 to {MAX_SLOT}), e.g. 7-lunar-pepper-canal; got {0:?}")]
    BadNumber(String),
    /// Not the right number of words.
    #[error("a short code has a number and {CODE_WORDS} words, e.g. 7-lunar-pepper-canal; got {0} words")]
    WordCount(usize),
    /// A word that is not on the list.
    #[error(
        "{word:?} is not a code word{}; check the spelling",
        did_you_mean(hint)
    )]
    UnknownWord {
        /// The typed word.
        word: String,
        /// The closest list words (one typo away or two), best first.
        hint: Vec<String>,
    },
}

impl ShortCode {
    /// A fresh code in `slot` from random bytes.
    pub fn new(slot: u16, random: [u8; CODE_WORDS]) -> ShortCode {
        ShortCode {
            slot,
            words: random,
        }
    }

    /// Parse what a person typed: case, surrounding space, and spaces or dashes between
    /// parts do not matter.
    pub fn parse(s: &str) -> Result<ShortCode, ShortCodeError> {
        let lower = s.trim().to_lowercase();
        let parts: Vec<&str> = lower
            .split(|c: char| c == '-' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .collect();
        let Some((num, rest)) = parts.split_first() else {
            return Err(ShortCodeError::Empty);
        };
        let slot: u16 = num
            .parse()
            .ok()
            .filter(|n| (1..=MAX_SLOT).contains(n))
            .ok_or_else(|| ShortCodeError::BadNumber(num.to_string()))?;
        if rest.len() != CODE_WORDS {
            return Err(ShortCodeError::WordCount(rest.len()));
        }
        let list = wordlist();
        let mut words = [0u8; CODE_WORDS];
        for (slot_word, w) in words.iter_mut().zip(rest) {
            match list.iter().position(|l| l == w) {
                Some(i) => {
                    *slot_word = u8::try_from(i).expect("invariant: the word list has 256 words")
                }
                None => {
                    return Err(ShortCodeError::UnknownWord {
                        word: w.to_string(),
                        hint: closest(list, w),
                    })
                }
            }
        }
        Ok(ShortCode { slot, words })
    }

    /// Does this text look like a short code (a number, a dash, a letter)? Used to route
    /// what a person pasted to the right kind of pairing.
    pub fn looks_like(s: &str) -> bool {
        let t = s.trim();
        let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
        digits > 0
            && t[digits..]
                .chars()
                .next()
                .is_some_and(|c| c == '-' || c == ' ')
    }

    /// The canonical text, `7-lunar-pepper-canal`. This is the PAKE password: show it only
    /// to the person who asked for it.
    pub fn reveal(&self) -> String {
        let list = wordlist();
        let mut s = self.slot.to_string();
        for w in self.words {
            s.push('-');
            s.push_str(list[usize::from(w)]);
        }
        s
    }
}

fn did_you_mean(hint: &[String]) -> String {
    if hint.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = hint.iter().map(|h| format!("{h:?}")).collect();
    format!(" (did you mean {}?)", quoted.join(" or "))
}

/// The list words nearest to `w` (at most three, within edit distance 2), in list order.
fn closest(list: &[&str], w: &str) -> Vec<String> {
    let dist: Vec<usize> = list.iter().map(|l| edit_distance(l, w)).collect();
    let Some(best) = dist.iter().copied().min().filter(|d| *d <= 2) else {
        return Vec::new();
    };
    let near: Vec<String> = list
        .iter()
        .zip(&dist)
        .filter(|(_, d)| **d == best)
        .map(|(l, _)| l.to_string())
        .collect();
    if near.len() > 3 {
        Vec::new()
    } else {
        near
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
