//! Text a worker wrote, as one type: [`WorkerText`].
//!
//! A worker taken over by an attacker can put anything in a string: a
//! newline that forges a line of the supervisor's log, terminal escapes,
//! megabytes. Fields a supervisor logs or shows to people carry this type,
//! whose only way out is escaped and cut to a readable length, so no path
//! can forget to escape them. On the wire it is a plain string.

use std::borrow::Cow;

use bincode::{Decode, Encode};

/// The most of a worker's text kept when it is shown.
pub const MAX_SHOWN: usize = 4096;

/// Untrusted text from a worker; read it with [`WorkerText::escaped`] or
/// `Display`, both of which escape control characters and cut it to
/// [`MAX_SHOWN`] bytes.
#[derive(Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct WorkerText(String);

impl WorkerText {
    /// Wraps text about to be sent (the worker's side).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text with control characters escaped (`\n` as two characters)
    /// and cut at [`MAX_SHOWN`] bytes, with a note of how much was cut.
    pub fn escaped(&self) -> String {
        escape(&self.0).into_owned()
    }

    /// Length of the raw text in bytes (for limits, never for showing).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for WorkerText {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl From<&str> for WorkerText {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl std::fmt::Display for WorkerText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&escape(&self.0))
    }
}

impl std::fmt::Debug for WorkerText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", escape(&self.0))
    }
}

/// Control characters escaped, then cut on a character boundary.
pub fn escape(text: &str) -> Cow<'_, str> {
    let mut shown = if text.chars().any(char::is_control) {
        Cow::Owned(
            text.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    };
    if shown.len() > MAX_SHOWN {
        let mut cut = MAX_SHOWN;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = shown.len() - cut;
        let mut owned = shown[..cut].to_owned();
        owned.push_str(&format!("... ({dropped} more bytes)"));
        shown = Cow::Owned(owned);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_cannot_forge_a_log_line_and_long_text_is_cut() {
        let forged = WorkerText::new("echo\n2026-01-01T00:00:00Z ERROR prx: forged");
        assert_eq!(
            forged.to_string(),
            "echo\\n2026-01-01T00:00:00Z ERROR prx: forged"
        );
        assert_eq!(forged.escaped(), forged.to_string());
        assert!(!format!("{forged:?}").contains('\n'));
        let long = WorkerText::new("é".repeat(MAX_SHOWN));
        let shown = long.escaped();
        assert!(shown.len() < MAX_SHOWN + 32, "{}", shown.len());
        assert!(shown.ends_with("more bytes)"), "{shown}");
        // On the wire it is a plain string.
        let mut as_text = Vec::new();
        crate::codec::put(&mut as_text, &"x\n".to_owned()).expect("encode");
        let mut as_worker_text = Vec::new();
        crate::codec::put(&mut as_worker_text, &WorkerText::new("x\n")).expect("encode");
        assert_eq!(as_text, as_worker_text);
    }
}
