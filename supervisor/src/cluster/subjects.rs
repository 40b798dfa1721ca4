//! The NATS subjects the cluster uses, and how names become subject
//! tokens and kv keys.
//!
//! Every subject starts with `prx.`; the subject permissions an operator
//! gives each node's credentials follow this list (see docs/cluster.md):
//!
//! - `prx.event.<node>.<topic>`: an event, published by the node where it
//!   was published (a node's credentials can hold it to its own name),
//!   read by every node (one queue group per plugin);
//! - `prx.call.<kind>.<name>`: a request for a tool, an RPC, a provider's
//!   chat or a middleware plugin, answered by one node serving it;
//! - `prx.node.<node>`: a node's heartbeat, with its plugins;
//! - `_INBOX.<node>.>`: the answers to a node's calls (a serving node
//!   answers only there, on the inbox of the node the call names).
//!
//! JetStream key-value uses `$KV.prx-kv-<plugin>.>` and the JetStream API
//! (`$JS.API.>`).

/// Longest node name.
pub const MAX_NODE_LEN: usize = 64;

/// Every event, for a subscription.
pub const ALL_EVENTS: &str = "prx.event.>";
/// Every heartbeat.
pub const ALL_NODES: &str = "prx.node.*";

/// The subject of an event on `topic` published on `node` (a valid topic
/// is a valid subject: dot-separated words of letters, digits, `_` and
/// `-`; a node name is one word).
pub fn event(node: &str, topic: &str) -> String {
    format!("prx.event.{node}.{topic}")
}

/// The node and topic of an event subject; `None` for anything else.
pub fn event_of(subject: &str) -> Option<(&str, &str)> {
    subject.strip_prefix("prx.event.")?.split_once('.')
}

/// Where a node's answers go: its inbox prefix.
pub fn inbox(node: &str) -> String {
    format!("_INBOX.{node}")
}

/// Whether `reply` is an inbox of `node` (and a plain subject).
pub fn is_inbox_of(reply: &str, node: &str) -> bool {
    reply
        .strip_prefix(&inbox(node))
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(is_subject_words)
}

/// The heartbeat subject of a node.
pub fn node(node: &str) -> String {
    format!("prx.node.{node}")
}

/// What a cross-node call asks for; each kind has its own subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallKind {
    Tool,
    Rpc,
    Chat,
    Middleware,
}

impl CallKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Rpc => "rpc",
            Self::Chat => "chat",
            Self::Middleware => "mw",
        }
    }
}

/// The subject calls of `kind` to `name` go to; `None` for a name that is
/// not made of subject-safe words (it is then served on its node alone).
pub fn call(kind: CallKind, name: &str) -> Option<String> {
    is_subject_words(name).then(|| format!("prx.call.{}.{name}", kind.label()))
}

/// Dot-separated non-empty words of ASCII letters, digits, `_` and `-`:
/// no wildcard, no space, no empty token.
pub fn is_subject_words(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.split('.').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// A node name: lowercase letters, digits and `-`, 1 to 64 of them.
pub fn check_node(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NODE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node = {name:?} is not a node name (lowercase letters, digits and `-`, at most {MAX_NODE_LEN}), e.g. \"node-a\""
        ))
    }
}

/// The JetStream kv bucket of a plugin (plugin names are kebab-case, so
/// always a valid bucket name).
pub fn bucket(plugin: &str) -> String {
    format!("prx-kv-{plugin}")
}

/// A plugin's key as a JetStream kv key. kv keys may hold only
/// `[-/_=.a-zA-Z0-9]` and no empty `.` token, so every byte outside
/// `[-/_a-zA-Z0-9]` (the dot and `=` included) becomes `=XX`, its hex.
/// Byte by byte, so a key's prefix encodes to the encoded key's prefix;
/// after a `k`, so that the empty key is a key too.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    out.push('k');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The plugin's key back from [`encode_key`]; `None` for a key this host
/// did not write (it is then not the plugin's).
pub fn decode_key(encoded: &str) -> Option<String> {
    let key = decode_any(encoded)?;
    // One spelling per key: `=2e` or `=+1` are not how a key was written.
    (encode_key(&key) == encoded).then_some(key)
}

fn decode_any(encoded: &str) -> Option<String> {
    let encoded = encoded.strip_prefix('k')?;
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_key_survives_the_kv_encoding_and_keeps_its_prefixes() {
        for key in [
            "plain", "a.b", "=", "é x*>", "", ".lead", "trail.", "a..b", "\u{0}",
        ] {
            let encoded = encode_key(key);
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b)),
                "{encoded}"
            );
            assert_eq!(decode_key(&encoded).as_deref(), Some(key));
            for cut in 0..=key.len() {
                if let Some(prefix) = key.get(..cut) {
                    assert!(encoded.starts_with(&encode_key(prefix)));
                }
            }
        }
        assert_eq!(decode_key("k=4"), None);
        assert_eq!(decode_key("k=ZZ"), None);
        assert_eq!(decode_key("plain"), None);
        assert_eq!(decode_key("ka=2eb"), None);
        assert_eq!(decode_key("k=+1"), None);
        assert_eq!(
            decode_key("k=41"),
            None,
            "an escaped letter is not canonical"
        );
    }

    #[test]
    fn only_subject_safe_names_get_a_call_subject() {
        assert_eq!(
            call(CallKind::Tool, "echo").as_deref(),
            Some("prx.call.tool.echo")
        );
        assert_eq!(
            call(CallKind::Rpc, "stats.mean").as_deref(),
            Some("prx.call.rpc.stats.mean")
        );
        for bad in ["", "a b", "a.*", "a.>", "a..b", ".a"] {
            assert_eq!(call(CallKind::Tool, bad), None, "{bad}");
        }
        assert!(is_inbox_of("_INBOX.node-a.x1.y", "node-a"));
        for reply in [
            "_INBOX.node-b.x",
            "$KV.prx-kv-a.k",
            "_INBOX.node-a",
            "_INBOX.node-a.>",
            "_INBOX.node-ab.x",
        ] {
            assert!(!is_inbox_of(reply, "node-a"), "{reply}");
        }
        assert_eq!(event_of("prx.event.node-a.a.b"), Some(("node-a", "a.b")));
        assert!(check_node("node-a").is_ok());
        assert!(check_node("Node.A").is_err());
    }
}
