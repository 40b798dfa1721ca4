//! Test guest: a storage backend with switchable faults. Memories live in
//! kv. Storing the content `!unhealthy` makes the next ten `health-check`s
//! false; `!error` is refused with an error; `!trap` crashes the instance.

use prx_pdk::prelude::*;

pub struct Faulty;

impl Storage for Faulty {
    fn name() -> String {
        "faulty".into()
    }

    fn store_memory(
        key: &str,
        content: &str,
        category: &str,
        _session_id: Option<&str>,
    ) -> Result<(), String> {
        match content {
            "!unhealthy" => return kv::set_str("unhealthy-checks", "10"),
            "!error" => return Err("the backend refused the write".into()),
            "!trap" => panic!("storage crashed"),
            _ => {}
        }
        kv::set_str(&format!("m:{key}"), &format!("{category}\n{content}"))
    }

    fn recall_memory(
        query: &str,
        limit: u32,
        _session_id: Option<&str>,
    ) -> Result<Vec<StoredMemory>, String> {
        let mut found = Vec::new();
        for full in kv::list_keys("m:") {
            let Some(text) = kv::get_str(&full) else {
                continue;
            };
            let (category, content) = text.split_once('\n').unwrap_or(("", &text));
            if content.contains(query) {
                found.push(StoredMemory {
                    id: full[2..].to_owned(),
                    key: full[2..].to_owned(),
                    content: content.into(),
                    category: category.into(),
                    timestamp: "0".into(),
                    score: Some(1.0),
                });
            }
        }
        found.truncate(limit as usize);
        Ok(found)
    }

    fn forget_memory(key: &str) -> Result<bool, String> {
        kv::delete(&format!("m:{key}"))
    }

    fn count_memories() -> Result<u32, String> {
        Ok(kv::list_keys("m:").len() as u32)
    }

    fn health_check() -> bool {
        match kv::increment("unhealthy-checks", -1) {
            Ok(left) if left >= 0 => false,
            _ => {
                let _ = kv::delete("unhealthy-checks");
                true
            }
        }
    }
}

export_storage!(Faulty);
