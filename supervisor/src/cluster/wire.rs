//! What crosses the cluster link: events, calls and their answers, and
//! heartbeats, in bincode with a size limit. Another node is trusted only
//! as far as its NATS credentials go, so every message read is decoded
//! under the limit and checked (names, topic, payload, chain) before it
//! reaches a plugin; one that fails is dropped and counted.

use bincode::{Decode, Encode};
use prx_ipc::{ChatMessage, ChatResponse};

use crate::services::events::MAX_PAYLOAD;
use crate::topics::check_topic;

/// Largest message read from the link: NATS's default `max_payload`.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Most plugins one heartbeat may list (the table of members keeps the
/// last heartbeat of each node).
pub const MAX_ANNOUNCED_PLUGINS: usize = 4096;
/// Longest causal chain accepted from another node (the bus holds back
/// anything past its `max_depth`, at most this).
pub const MAX_CHAIN: usize = 64;

const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_MESSAGE>,
> = bincode::config::standard().with_limit::<MAX_MESSAGE>();

pub fn encode<T: Encode>(message: &T) -> Vec<u8> {
    // Encoding into a Vec fails only past the limit, which callers keep
    // below (payloads are capped long before it); an empty message is
    // then refused by the reader.
    bincode::encode_to_vec(message, CONFIG).unwrap_or_default()
}

pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > MAX_MESSAGE {
        return Err(format!("{} bytes, over {MAX_MESSAGE}", bytes.len()));
    }
    match bincode::decode_from_slice(bytes, CONFIG) {
        Ok((message, read)) if read == bytes.len() => Ok(message),
        Ok(_) => Err("trailing bytes".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// An event, as the node where it was published sends it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EventMsg {
    pub node: String,
    pub topic: String,
    pub payload: String,
    /// The plugin that published it; `None` for a host.
    pub source: Option<String>,
    /// The plugins whose handlers caused it, first cause first.
    pub chain: Vec<String>,
    pub published_at_ms: u64,
}

impl EventMsg {
    /// What the bus would have refused from a local publisher is refused
    /// from another node too.
    pub fn check(&self) -> Result<(), String> {
        super::subjects::check_node(&self.node)?;
        check_topic(&self.topic).map_err(|e| e.to_string())?;
        if self.payload.len() > MAX_PAYLOAD {
            return Err(format!("a payload of {} bytes", self.payload.len()));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&self.payload)
            .map_err(|e| format!("a payload that is not JSON: {e}"))?;
        if self.chain.len() > MAX_CHAIN {
            return Err(format!("a causal chain of {} plugins", self.chain.len()));
        }
        for name in self.chain.iter().chain(&self.source) {
            crate::manifest::check_name("plugin", name)?;
        }
        Ok(())
    }
}

/// What a cross-node call asks for.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum CallBody {
    Tool {
        tool: String,
        args: String,
    },
    Rpc {
        name: String,
        payload: String,
    },
    Chat {
        provider: String,
        messages: Vec<ChatMessage>,
        model: String,
        temperature: f64,
    },
    Middleware {
        plugin: String,
        stage: String,
        data: String,
    },
}

/// A call, with who made it and how long its caller waits.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct CallMsg {
    pub from: String,
    /// Milliseconds the caller still waits, from when it sent the call.
    pub deadline_ms: u64,
    pub body: CallBody,
}

/// What a call came to.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Answer {
    Text(String),
    Chat(ChatResponse),
    /// The call failed: its error kind (as `CallError::kind` names it) and
    /// message, as the serving node said them.
    Failed {
        kind: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AnswerMsg {
    /// The node that served the call.
    pub node: String,
    pub answer: Answer,
}

/// A node's heartbeat: who it is and what it serves.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Announce {
    pub node: String,
    pub started_at_ms: u64,
    /// Sent once as the node shuts down: drop it from the table now.
    pub leaving: bool,
    pub plugins: Vec<PluginAnnounce>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct PluginAnnounce {
    pub name: String,
    pub version: String,
    /// `running`, `quarantined`, ... as `prx status` says it.
    pub state: String,
    pub tools: Vec<String>,
    pub providers: Vec<String>,
    pub rpcs: Vec<String>,
    /// Its place in the middleware chains, when it is a middleware.
    pub middleware_priority: Option<i64>,
}

impl Announce {
    pub fn check(&self) -> Result<(), String> {
        super::subjects::check_node(&self.node)?;
        if self.plugins.len() > MAX_ANNOUNCED_PLUGINS {
            return Err("too many plugins".into());
        }
        for p in &self.plugins {
            crate::manifest::check_name("plugin", &p.name)?;
            let names = p.tools.iter().chain(&p.providers).chain(&p.rpcs);
            if let Some(bad) = names
                .clone()
                .find(|n| !super::subjects::is_subject_words(n))
            {
                return Err(format!("plugin {} serves a bad name {bad:?}", p.name));
            }
            if p.version.len() > 64 || p.state.len() > 64 {
                return Err(format!("plugin {}: overlong fields", p.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_from_another_node_are_held_to_the_local_rules() {
        let good = EventMsg {
            node: "node-b".into(),
            topic: "order.created".into(),
            payload: "{}".into(),
            source: Some("orders".into()),
            chain: vec!["orders".into()],
            published_at_ms: 1,
        };
        let back: EventMsg = decode(&encode(&good)).unwrap();
        assert_eq!(back, good);
        assert!(back.check().is_ok());
        let bad = [
            EventMsg {
                topic: "a.*".into(),
                ..good.clone()
            },
            EventMsg {
                payload: "not json".into(),
                ..good.clone()
            },
            EventMsg {
                payload: format!("\"{}\"", "x".repeat(MAX_PAYLOAD)),
                ..good.clone()
            },
            EventMsg {
                chain: vec!["../etc".into()],
                ..good.clone()
            },
            EventMsg {
                chain: vec!["a".into(); MAX_CHAIN + 1],
                ..good.clone()
            },
            EventMsg {
                node: "Node B".into(),
                ..good.clone()
            },
        ];
        for event in bad {
            assert!(event.check().is_err(), "{event:?}");
        }
        let mut bytes = encode(&good);
        bytes.push(0);
        assert!(decode::<EventMsg>(&bytes).is_err());
        assert!(decode::<EventMsg>(&[0xff; 16]).is_err());
    }
}
