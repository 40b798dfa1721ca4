//! Topics, subscription patterns and causal chains: the names the event
//! bus, manifests and calls share, and what is wrong with a bad one.

use std::sync::Arc;

/// Longest topic or pattern.
pub const MAX_TOPIC_LEN: usize = 256;
/// Topics reserved to the host.
pub const HOST_PREFIX: &str = "prx";

/// The plugins whose event handlers led to an event or a call, first cause
/// first. Empty for what the host or an operator started.
pub type Chain = Arc<[Arc<str>]>;

/// The chain of nothing: a host call outside any handler.
pub fn no_chain() -> Chain {
    Arc::new([])
}

/// `chain` followed by `plugin`: what a handler of `plugin` causes.
pub fn extend(chain: &Chain, plugin: &Arc<str>) -> Chain {
    chain.iter().cloned().chain([plugin.clone()]).collect()
}

/// The chain of an event `plugin` publishes: whatever caused the call it
/// runs (none, when it publishes outside any invocation), and always the
/// plugin itself, so its own events never come back to it, directly or
/// through others.
pub fn published_by(chain: &Chain, plugin: &Arc<str>) -> Chain {
    if chain.iter().any(|p| **p == **plugin) {
        chain.clone()
    } else {
        extend(chain, plugin)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("payload of {0} bytes is larger than the 64 KiB maximum")]
    PayloadTooLarge(usize),
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid topic {topic:?}: {why}")]
    InvalidTopic { topic: String, why: &'static str },
    #[error("invalid pattern {pattern:?}: {why}")]
    InvalidPattern { pattern: String, why: &'static str },
    #[error("topic {0:?} is reserved to the host (prx.*)")]
    Reserved(String),
    #[error("no subscription {0} belongs to this plugin")]
    NotYours(u64),
    #[error("too many subscriptions (at most {0} per plugin)")]
    TooManySubscriptions(usize),
    #[error(
        "publishing faster than {0} events/s (the host's limit per plugin); this event was not published"
    )]
    TooFast(u32),
}

/// A subscription pattern: `*`, `prefix.*` or an exact topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    All,
    /// `a.b.*`, kept as `a.b.`: matches topics that start with it.
    Under(String),
    Exact(String),
}

impl Pattern {
    pub fn parse(pattern: &str) -> Result<Self, EventError> {
        let bad = |why| EventError::InvalidPattern {
            pattern: pattern.into(),
            why,
        };
        if pattern == "*" {
            return Ok(Self::All);
        }
        if let Some(prefix) = pattern.strip_suffix(".*") {
            check_topic(prefix).map_err(|e| match e {
                EventError::InvalidTopic { why, .. } => bad(why),
                other => other,
            })?;
            return Ok(Self::Under(format!("{prefix}.")));
        }
        if pattern.contains('*') {
            return Err(bad(
                "`*` is allowed alone or as the last segment (`a.*`), nowhere else",
            ));
        }
        check_topic(pattern).map_err(|e| match e {
            EventError::InvalidTopic { why, .. } => bad(why),
            other => other,
        })?;
        Ok(Self::Exact(pattern.into()))
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::All => true,
            Self::Under(prefix) => topic.starts_with(prefix.as_str()),
            Self::Exact(exact) => topic == exact,
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Under(prefix) => write!(f, "{prefix}*"),
            Self::Exact(exact) => f.write_str(exact),
        }
    }
}

/// Topics are dot-separated segments of letters, digits, `_` and `-`.
pub fn check_topic(topic: &str) -> Result<(), EventError> {
    let bad = |why| EventError::InvalidTopic {
        topic: topic.into(),
        why,
    };
    if topic.is_empty() {
        return Err(bad("empty"));
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(bad("longer than 256 bytes"));
    }
    if topic.split('.').any(str::is_empty) {
        return Err(bad("empty segment (leading, trailing or doubled `.`)"));
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("only letters, digits, `_`, `-` and `.` are allowed"));
    }
    Ok(())
}

/// True for the host's own topics: `prx` and those under `prx.`.
pub(crate) fn is_reserved(topic: &str) -> bool {
    topic == HOST_PREFIX
        || topic
            .strip_prefix(HOST_PREFIX)
            .is_some_and(|rest| rest.starts_with('.'))
}
