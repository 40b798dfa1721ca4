//! Writing the memory: an entry and its index postings in, or out, each
//! in a durable transaction of its own, within the writer's share.

use std::collections::BTreeMap;

use redb::{Database, Durability, ReadableTable, WriteTransaction};

use super::super::kv::latched;
use super::{
    ENTRIES, MAX_BYTES_PER_PLUGIN, MAX_CATEGORY, MAX_ENTRIES_PER_PLUGIN, MAX_TEXT, MemoryError,
    POSTINGS, STATS, StoredMemory, storage, terms,
};

fn commit_failed(e: redb::CommitError) -> MemoryError {
    let e = redb::Error::from(e);
    if latched(&e) {
        MemoryError::Disk(e.to_string())
    } else {
        storage(e)
    }
}

/// The entry `plugin` stores for `text` and the frequency of each of its
/// words, or why it cannot be stored.
pub(super) fn indexed(
    plugin: &str,
    text: &str,
    category: &str,
) -> Result<(StoredMemory, BTreeMap<String, u32>), MemoryError> {
    if text.len() > MAX_TEXT {
        return Err(MemoryError::TextTooLong(text.len()));
    }
    if category.len() > MAX_CATEGORY {
        return Err(MemoryError::CategoryTooLong(category.len()));
    }
    let mut tf: BTreeMap<String, u32> = BTreeMap::new();
    for term in terms(text) {
        *tf.entry(term).or_default() += 1;
    }
    if tf.is_empty() {
        return Err(MemoryError::NoWords);
    }
    let entry = StoredMemory {
        text: text.into(),
        category: category.into(),
        plugin: plugin.into(),
        stored_at_ms: crate::clock::now_ms(),
        terms: tf.values().map(|n| u64::from(*n)).sum(),
    };
    Ok((entry, tf))
}

/// Stores `entry` in a durable transaction of its own; returns its id.
pub(super) fn insert(
    db: &Database,
    entry: &StoredMemory,
    tf: &BTreeMap<String, u32>,
) -> Result<u64, MemoryError> {
    let mut txn = db.begin_write().map_err(storage)?;
    txn.set_durability(Durability::Immediate).map_err(storage)?;
    let id = insert_in(&txn, entry, tf)?;
    txn.commit().map_err(commit_failed)?;
    Ok(id)
}

/// Adds `entry` and its postings to `txn`, within its plugin's share;
/// returns its id.
pub(super) fn insert_in(
    txn: &WriteTransaction,
    entry: &StoredMemory,
    tf: &BTreeMap<String, u32>,
) -> Result<u64, MemoryError> {
    let mut stats = txn.open_table(STATS).map_err(storage)?;
    let get = |name: &str| -> Result<u64, MemoryError> {
        Ok(stats
            .get(name)
            .map_err(storage)?
            .map(|v| v.value())
            .unwrap_or(0))
    };
    let per_plugin = format!("plugin:{}", entry.plugin);
    let bytes_key = format!("bytes:{}", entry.plugin);
    let mine = get(&per_plugin)?;
    if mine >= MAX_ENTRIES_PER_PLUGIN {
        return Err(MemoryError::Full);
    }
    let bytes = get(&bytes_key)? + entry.text.len() as u64;
    if bytes > MAX_BYTES_PER_PLUGIN {
        return Err(MemoryError::TooMuchText);
    }
    let id = get("next_id")? + 1;
    let count = get("count")?;
    let total = get("total_terms")?;
    for (name, value) in [
        ("next_id", id),
        ("count", count + 1),
        ("total_terms", total + entry.terms),
        (per_plugin.as_str(), mine + 1),
        (bytes_key.as_str(), bytes),
    ] {
        stats.insert(name, value).map_err(storage)?;
    }
    let mut postings = txn.open_table(POSTINGS).map_err(storage)?;
    for (term, n) in tf {
        postings.insert((term.as_str(), id), *n).map_err(storage)?;
    }
    let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
    let raw = serde_json::to_vec(entry).map_err(storage)?;
    entries.insert(id, raw.as_slice()).map_err(storage)?;
    Ok(id)
}

pub(super) fn remove(db: &Database, id: u64) -> Result<bool, MemoryError> {
    let mut txn = db.begin_write().map_err(storage)?;
    txn.set_durability(Durability::Immediate).map_err(storage)?;
    {
        let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
        let Some(raw) = entries.remove(id).map_err(storage)? else {
            return Ok(false);
        };
        let entry: StoredMemory = serde_json::from_slice(raw.value()).map_err(storage)?;
        drop(raw);
        let mut postings = txn.open_table(POSTINGS).map_err(storage)?;
        let mut seen = std::collections::BTreeSet::new();
        for term in terms(&entry.text) {
            if seen.insert(term.clone()) {
                postings.remove((term.as_str(), id)).map_err(storage)?;
            }
        }
        let mut stats = txn.open_table(STATS).map_err(storage)?;
        let per_plugin = format!("plugin:{}", entry.plugin);
        let bytes_key = format!("bytes:{}", entry.plugin);
        for (name, minus) in [
            ("count", 1),
            ("total_terms", entry.terms),
            (per_plugin.as_str(), 1),
            (bytes_key.as_str(), entry.text.len() as u64),
        ] {
            let now = stats
                .get(name)
                .map_err(storage)?
                .map(|v| v.value())
                .unwrap_or(0);
            stats
                .insert(name, now.saturating_sub(minus))
                .map_err(storage)?;
        }
    }
    txn.commit().map_err(commit_failed)?;
    Ok(true)
}
