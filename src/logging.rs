//! Log lines a peer cannot forge: every text that reaches a log line is escaped and
//! length-capped.
//!
//! A peer controls many strings the broker logs — the SASL user name, the container-id, link
//! names, addresses, the descriptions in its `close`/`detach` errors. Written as they are, a
//! newline in one of them starts a forged log line and `ESC [2J` clears the operator's
//! terminal. Two layers stop that:
//! - [`fields`] is the field formatter `sluice` installs in its subscriber: every field value
//!   (the message included) has its control characters escaped and is cut at
//!   [`MAX_FIELD_CHARS`], whatever the log site did;
//! - [`PeerText`] escapes and caps one peer string at the log site, for embedders that install
//!   their own subscriber, and so one long string cannot crowd out the rest of a message.

use std::fmt::{self, Write};

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{FormatFields, Writer};

/// Longest text of one field (the message included) in a log line, in characters.
pub const MAX_FIELD_CHARS: usize = 2048;
/// Longest text of one peer string inside a log line, in characters.
pub const MAX_PEER_CHARS: usize = 256;

/// A string from a peer, for a log line: `Display` escapes it and cuts it at
/// [`MAX_PEER_CHARS`].
#[derive(Debug, Clone, Copy)]
pub struct PeerText<'a>(pub &'a str);

impl fmt::Display for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, MAX_PEER_CHARS)
    }
}

/// Writes `text` to `out` with every character that could end a line, move the cursor or
/// reorder what a reader sees replaced by a visible escape (`\n`, `\r`, `\t`, `\u{1b}`), and
/// at most `max_chars` characters of it, followed by a note of how much was cut.
pub fn write_escaped<W: Write + ?Sized>(out: &mut W, text: &str, max_chars: usize) -> fmt::Result {
    for (written, (at, c)) in text.char_indices().enumerate() {
        if written == max_chars {
            return write!(out, "…[{} more bytes]", text.len() - at);
        }
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if needs_escape(c) => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// `text` escaped and capped as [`write_escaped`] does.
#[cfg(test)]
pub fn escaped(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars));
    // Writing to a String cannot fail.
    let _ = write_escaped(&mut out, text, max_chars);
    out
}

/// Control characters (C0, DEL, C1: ESC starts terminal sequences, NEL ends lines), the
/// Unicode line and paragraph separators, and the bidirectional overrides that make a line
/// read differently from what it holds.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// The field formatter for a `tracing_subscriber::fmt` subscriber: `message key=value ...`
/// as the default one writes it, with every value escaped and capped (see the module doc).
pub fn fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    tracing_subscriber::fmt::format::debug_fn(|writer: &mut Writer<'_>, field, value| {
        // String fields arrive Debug-quoted (and so already escaped); Display and message
        // fields arrive as they are.
        let text = format!("{value:?}");
        if field.name() != "message" {
            write!(writer, "{}=", field.name())?;
        }
        write_escaped(writer, &text, MAX_FIELD_CHARS)
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_terminal_escapes_become_visible_text() {
        assert_eq!(
            escaped("bob\nINFO forged\r\x1b[2J\tx", 100),
            "bob\\nINFO forged\\r\\u{1b}[2J\\tx"
        );
        assert_eq!(escaped("\u{85}\u{7f}\0", 100), "\\u{85}\\u{7f}\\u{0}");
        assert_eq!(
            escaped("a\u{2028}b\u{202e}c\u{2066}", 100),
            "a\\u{2028}b\\u{202e}c\\u{2066}"
        );
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for text in ["orders.eu", "Grüße, 世界", "a\\nb", "", "queue://x y"] {
            assert_eq!(escaped(text, 100), text);
        }
    }

    #[test]
    fn long_text_is_cut_with_a_note_of_what_was_dropped() {
        assert_eq!(escaped("abcdef", 4), "abcd…[2 more bytes]");
        assert_eq!(escaped("abcd", 4), "abcd");
        assert_eq!(escaped("ééé", 1), "é…[4 more bytes]");
        let long = "x".repeat(100_000);
        assert!(PeerText(&long).to_string().len() < MAX_PEER_CHARS + 32);
    }

    #[test]
    fn the_subscriber_escapes_display_fields_and_the_message() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::ErrorKind::Other)?
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(fields())
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let peer = "c1\nERROR forged\x1b[2J";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(container_id = %peer, user = peer, "opened by {peer}");
        });
        let text = String::from_utf8(buffer.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(
            text.contains(
                r"opened by c1\nERROR forged\u{1b}[2J container_id=c1\nERROR forged\u{1b}[2J user="
            ),
            "{text:?}"
        );
    }
}
