//! A memory backend kept in the plugin's kv store. Each memory is one kv
//! entry (`mem:<key>`, JSON); recall ranks them by how many of the query's
//! words they contain. Selected by an operator with
//! `[memory] backend = "kv-memory"`.

use prx_pdk::prelude::*;
use serde_json::{Value, json};

pub struct KvMemory;

const PREFIX: &str = "mem:";

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}")
}

impl Storage for KvMemory {
    fn name() -> String {
        "kv-memory".into()
    }

    fn store_memory(
        key: &str,
        content: &str,
        category: &str,
        session_id: Option<&str>,
    ) -> Result<(), String> {
        let entry = json!({
            "content": content,
            "category": category,
            "session": session_id,
            "timestamp": now(),
        });
        kv::set_json(&format!("{PREFIX}{key}"), &entry)
    }

    fn recall_memory(
        query: &str,
        limit: u32,
        session_id: Option<&str>,
    ) -> Result<Vec<StoredMemory>, String> {
        let wanted = words(query);
        let mut found = Vec::new();
        for full in kv::list_keys(PREFIX) {
            let Some(entry) = kv::get_json::<Value>(&full) else {
                continue;
            };
            if session_id.is_some() && entry["session"].as_str() != session_id {
                continue;
            }
            let content = entry["content"].as_str().unwrap_or_default();
            let have = words(content);
            let hits = wanted.iter().filter(|w| have.contains(w)).count();
            if hits == 0 {
                continue;
            }
            let key = full[PREFIX.len()..].to_owned();
            found.push(StoredMemory {
                id: key.clone(),
                key,
                content: content.into(),
                category: entry["category"].as_str().unwrap_or_default().into(),
                timestamp: entry["timestamp"].as_str().unwrap_or_default().into(),
                score: Some(hits as f64 / wanted.len().max(1) as f64),
            });
        }
        found.sort_by(|a, b| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        found.truncate(limit as usize);
        Ok(found)
    }

    fn forget_memory(key: &str) -> Result<bool, String> {
        kv::delete(&format!("{PREFIX}{key}"))
    }

    fn count_memories() -> Result<u32, String> {
        Ok(kv::list_keys(PREFIX).len() as u32)
    }

    fn health_check() -> bool {
        true
    }
}

export_storage!(KvMemory);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_recalls_by_words_and_forgets() {
        KvMemory::store_memory("a", "the cat sat", "fact", None).unwrap();
        KvMemory::store_memory("b", "a dog ran", "fact", Some("s1")).unwrap();
        let found = KvMemory::recall_memory("cat", 5, None).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "a");
        assert_eq!(KvMemory::count_memories().unwrap(), 2);
        assert!(
            KvMemory::recall_memory("dog", 5, Some("other"))
                .unwrap()
                .is_empty()
        );
        assert!(KvMemory::forget_memory("a").unwrap());
        assert!(!KvMemory::forget_memory("a").unwrap());
        assert_eq!(KvMemory::count_memories().unwrap(), 1);
    }
}
