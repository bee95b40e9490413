//! Text from outside (what a server, git or a hook said, a value quoted back) made safe to show:
//! nothing in it can drive a terminal, forge or break a line, or fill a log.

/// `text` from outside (what a server, git or a hook said, a value quoted back) as it may be
/// shown: trimmed, every character that could drive a terminal, break the line or reorder it
/// escaped ([`escape`]), and cut to at most `max` characters, then marked with the length of the
/// whole. A remote cannot forge a line of ours, set a terminal's title or colours, or fill a log.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    let mut out = String::new();
    let mut shown = 0;
    for c in text.chars() {
        let piece = escape_char(c);
        let width = piece.as_deref().map_or(1, |p| p.chars().count());
        if shown + width > max {
            return format!("{out}... ({} characters)", text.chars().count());
        }
        shown += width;
        match piece {
            Some(p) => out.push_str(&p),
            None => out.push(c),
        }
    }
    out
}

/// Whether printing `c` raw could drive a terminal (C0 and C1 controls, DEL), end or break the
/// line (CR, LF, the Unicode line and paragraph separators), or reorder or hide the text around
/// it (bidirectional and zero-width formatting characters).
fn unsafe_to_show(c: char) -> bool {
    crate::base::refname::moves_the_terminal(c)
        || matches!(
            c,
            '\u{61c}'
                | '\u{200b}'..='\u{200d}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206a}'..='\u{206f}'
                | '\u{feff}'
        )
}

/// How `c` is written when it is not safe to show raw (`\n`, `\r`, `\t`, else `\u{1b}`).
fn escape_char(c: char) -> Option<String> {
    if !unsafe_to_show(c) {
        return None;
    }
    Some(match c {
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        _ => format!("\\u{{{:x}}}", u32::from(c)),
    })
}

/// `text` with every character that is not safe to show raw escaped: the last line of defence
/// for whatever reaches the final error line, the JSON summary or the log, from whichever party.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(unsafe_to_show) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match escape_char(c) {
            Some(p) => out.push_str(&p),
            None => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `word` as one shell word: as it is when it needs no quoting, else single-quoted.
pub(crate) fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
    if plain {
        word.to_string()
    } else {
        sq_quote(word)
    }
}

/// `text` single-quoted for a POSIX shell exactly as git quotes it (`sq_quote_buf`): `'` and
/// `!` closed, escaped and reopened.
pub(crate) fn sq_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if matches!(c, '\'' | '!') {
            out.push_str("'\\");
            out.push(c);
            out.push('\'');
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_clipped_cannot_drive_a_terminal_or_break_the_line() {
        let said =
            "\x1b[31mred\x07\x1b]0;title\x07\nbacklog-mirror: in sync\r\0\u{9b}\u{202e}\u{2028}ok";
        assert_eq!(
            clip(said, 1000),
            "\\u{1b}[31mred\\u{7}\\u{1b}]0;title\\u{7}\\nbacklog-mirror: in sync\\r\\u{0}\\u{9b}\\u{202e}\\u{2028}ok"
        );
        assert_eq!(clip("  plain words\n", 1000), "plain words");
        // Cut by what is shown, never inside an escape, and marked with the whole length.
        assert_eq!(clip("ab\0cd", 5), "ab... (5 characters)");
        assert_eq!(clip("ab\0cd", 7), "ab\\u{0}... (5 characters)");
        let long = "x".repeat(10_000);
        assert_eq!(clip(&long, 3), "xxx... (10000 characters)");
        assert_eq!(escape("a\tb"), "a\\tb");
        assert!(matches!(
            escape("plain"),
            std::borrow::Cow::Borrowed("plain")
        ));
    }
}
