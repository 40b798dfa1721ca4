//! Text a worker sent, made safe to keep, log and show.
//!
//! Anything a plugin writes may try to forge log lines or drive a
//! terminal; what the supervisor keeps of it passes through here.

/// Longest text from a worker the supervisor keeps (an error, a reason).
const MAX_UNTRUSTED_TEXT: usize = 4096;

/// Text a worker sent (error messages, sandbox reasons), made safe to keep,
/// log and show: control characters escaped, cut to a few KiB.
pub(crate) fn untrusted_text(text: String) -> String {
    let mut text = match sanitize(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    };
    if text.len() > MAX_UNTRUSTED_TEXT {
        let mut cut = MAX_UNTRUSTED_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!("... ({dropped} more bytes)"));
    }
    text
}

/// Plugin text is untrusted: control characters (newlines that would forge
/// log lines, terminal escapes) are shown escaped.
fn sanitize(message: &str) -> std::borrow::Cow<'_, str> {
    if message.chars().any(char::is_control) {
        message
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        message.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_log_lines() {
        assert_eq!(sanitize("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(sanitize("plain"), "plain");
    }

    #[test]
    fn worker_text_is_escaped_and_cut() {
        assert_eq!(untrusted_text("fine".into()), "fine");
        assert_eq!(untrusted_text("a\nb".into()), "a\\nb");
        let long = untrusted_text("é".repeat(10_000));
        assert!(long.len() < MAX_UNTRUSTED_TEXT + 40, "{}", long.len());
        assert!(
            long.ends_with("... (15904 more bytes)"),
            "{}",
            &long[long.len() - 30..]
        );
    }
}
