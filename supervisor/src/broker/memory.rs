//! The built-in memory store: text entries in the supervisor's redb
//! database, recalled by BM25 relevance.
//!
//! Every entry records the plugin that stored it. Entries are indexed by
//! word (lower-cased runs of letters and digits) in an inverted index,
//! `(term, entry id) -> term frequency`, kept in the same transaction as
//! the entry, so `recall` reads only the postings of the query's words.
//! The memory is shared, as in PRX: a plugin granted `memory` recalls what
//! any plugin stored; the operator decides who gets it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("memory_entries");
const POSTINGS: TableDefinition<(&str, u64), u32> = TableDefinition::new("memory_postings");
/// `count`, `total_terms`, `next_id`, and `plugin:<name>` entry counts.
const STATS: TableDefinition<&str, u64> = TableDefinition::new("memory_stats");

/// Longest text stored.
pub const MAX_TEXT: usize = 64 * 1024;
/// Longest category.
pub const MAX_CATEGORY: usize = 128;
/// Most entries one plugin may store.
pub const MAX_ENTRIES_PER_PLUGIN: u64 = 100_000;
/// Most bytes of text one plugin may store.
pub const MAX_BYTES_PER_PLUGIN: u64 = 64 << 20;
/// Most entries one recall returns.
pub const MAX_RECALL: u32 = 100;
/// Most distinct words of a query looked up (each is an index scan).
pub const MAX_QUERY_TERMS: usize = 64;
/// Longest word indexed; longer runs are cut.
const MAX_TERM: usize = 64;
/// BM25 parameters, the usual ones.
const K1: f64 = 1.2;
const B: f64 = 0.75;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("text of {0} bytes is longer than the {MAX_TEXT}-byte maximum")]
    TextTooLong(usize),
    #[error("category of {0} bytes is longer than the {MAX_CATEGORY}-byte maximum")]
    CategoryTooLong(usize),
    #[error("text has no words to index")]
    NoWords,
    #[error("a query of {0} different words; at most {MAX_QUERY_TERMS}")]
    TooManyWords(usize),
    #[error("this plugin already stores {MAX_ENTRIES_PER_PLUGIN} memories, the maximum")]
    Full,
    #[error("this plugin's memories would pass {MAX_BYTES_PER_PLUGIN} bytes of text, the maximum")]
    TooMuchText,
    #[error("storage failed: {0}")]
    Storage(String),
}

fn storage(e: impl std::fmt::Display) -> MemoryError {
    MemoryError::Storage(e.to_string())
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMemory {
    pub text: String,
    pub category: String,
    pub plugin: String,
    pub stored_at_ms: u64,
    /// Words indexed (the BM25 document length).
    pub terms: u64,
}

/// An entry recalled for a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recalled {
    pub id: String,
    pub text: String,
    pub category: String,
    pub plugin: String,
    /// The BM25 score.
    pub score: f64,
    /// The score relative to the best entry of this recall: 1.0 for the
    /// best match, lower for weaker ones.
    pub importance: f64,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct MemoryStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

/// Lower-cased runs of letters and digits, each cut to [`MAX_TERM`] bytes.
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut w = w.to_lowercase();
            if w.len() > MAX_TERM {
                let mut cut = MAX_TERM;
                while !w.is_char_boundary(cut) {
                    cut -= 1;
                }
                w.truncate(cut);
            }
            w
        })
}

impl MemoryStore {
    /// Uses (and creates the tables in) the supervisor's database.
    pub fn new(db: Arc<Database>) -> Result<Self, MemoryError> {
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(ENTRIES).map_err(storage)?;
        txn.open_table(POSTINGS).map_err(storage)?;
        txn.open_table(STATS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Self { db })
    }

    /// Stores an entry for `plugin`; returns its id once it is durable.
    pub async fn store(
        &self,
        plugin: &str,
        text: &str,
        category: &str,
    ) -> Result<String, MemoryError> {
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
            stored_at_ms: super::now_ms(),
            terms: tf.values().map(|n| u64::from(*n)).sum(),
        };
        let db = self.db.clone();
        // A durable commit waits for the disk: off the async threads.
        tokio::task::spawn_blocking(move || insert(&db, &entry, &tf))
            .await
            .map_err(storage)?
            .map(|id| id.to_string())
    }

    /// The `limit` entries most relevant to `query`, best first. Entries
    /// that share no word with the query are not returned.
    pub fn recall(&self, query: &str, limit: u32) -> Result<Vec<Recalled>, MemoryError> {
        if query.len() > MAX_TEXT {
            return Err(MemoryError::TextTooLong(query.len()));
        }
        let limit = limit.min(MAX_RECALL) as usize;
        let mut query_terms: Vec<String> = terms(query).collect();
        query_terms.sort();
        query_terms.dedup();
        if query_terms.len() > MAX_QUERY_TERMS {
            return Err(MemoryError::TooManyWords(query_terms.len()));
        }
        if limit == 0 || query_terms.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(storage)?;
        let stats = txn.open_table(STATS).map_err(storage)?;
        let stat = |name: &str| -> Result<u64, MemoryError> {
            Ok(stats
                .get(name)
                .map_err(storage)?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        let count = stat("count")?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let avg_len = stat("total_terms")? as f64 / count as f64;
        let postings = txn.open_table(POSTINGS).map_err(storage)?;
        let entries = txn.open_table(ENTRIES).map_err(storage)?;
        let mut lengths: HashMap<u64, (f64, StoredMemory)> = HashMap::new();
        let mut scores: HashMap<u64, f64> = HashMap::new();
        for term in &query_terms {
            let hits: Vec<(u64, u32)> = postings
                .range((term.as_str(), 0)..=(term.as_str(), u64::MAX))
                .map_err(storage)?
                .map(|r| r.map(|(k, v)| (k.value().1, v.value())))
                .collect::<Result<_, _>>()
                .map_err(storage)?;
            let df = hits.len() as f64;
            let idf = (1.0 + (count as f64 - df + 0.5) / (df + 0.5)).ln();
            for (id, tf) in hits {
                let len = match lengths.get(&id) {
                    Some((len, _)) => *len,
                    None => {
                        let Some(raw) = entries.get(id).map_err(storage)? else {
                            continue;
                        };
                        let entry: StoredMemory =
                            serde_json::from_slice(raw.value()).map_err(storage)?;
                        let len = entry.terms as f64;
                        lengths.insert(id, (len, entry));
                        len
                    }
                };
                let tf = f64::from(tf);
                let norm = tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg_len));
                *scores.entry(id).or_default() += idf * norm;
            }
        }
        let mut ranked: Vec<(u64, f64)> = scores.into_iter().collect();
        // Best score first; on a tie, the newer entry.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
        ranked.truncate(limit);
        let best = ranked.first().map(|(_, s)| *s).unwrap_or(1.0);
        Ok(ranked
            .into_iter()
            .filter_map(|(id, score)| {
                let (_, entry) = lengths.remove(&id)?;
                Some(Recalled {
                    id: id.to_string(),
                    text: entry.text,
                    category: entry.category,
                    plugin: entry.plugin,
                    score,
                    importance: if best > 0.0 { score / best } else { 0.0 },
                })
            })
            .collect())
    }

    /// Removes the entry `id` (as `store` returned it) and its index
    /// postings; true when it existed.
    pub async fn forget(&self, id: &str) -> Result<bool, MemoryError> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(false);
        };
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || remove(&db, id))
            .await
            .map_err(storage)?
    }

    /// Entries stored (all plugins).
    pub fn count(&self) -> Result<u64, MemoryError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let stats = txn.open_table(STATS).map_err(storage)?;
        Ok(stats
            .get("count")
            .map_err(storage)?
            .map(|v| v.value())
            .unwrap_or(0))
    }
}

fn insert(
    db: &Database,
    entry: &StoredMemory,
    tf: &BTreeMap<String, u32>,
) -> Result<u64, MemoryError> {
    let mut txn = db.begin_write().map_err(storage)?;
    txn.set_durability(Durability::Immediate).map_err(storage)?;
    let id = {
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
        id
    };
    txn.commit().map_err(storage)?;
    Ok(id)
}

fn remove(db: &Database, id: u64) -> Result<bool, MemoryError> {
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
    txn.commit().map_err(storage)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forgetting_removes_the_entry_its_postings_and_its_counts() {
        let m = store();
        let id = m
            .store("p", "red apples and green pears", "fact")
            .await
            .unwrap();
        m.store("p", "green grass", "fact").await.unwrap();
        assert_eq!(m.count().unwrap(), 2);
        assert!(m.forget(&id).await.unwrap());
        assert!(!m.forget(&id).await.unwrap(), "forgotten twice");
        assert!(!m.forget("not-an-id").await.unwrap());
        assert_eq!(m.count().unwrap(), 1);
        assert!(m.recall("apples", 5).unwrap().is_empty());
        let green = m.recall("green", 5).unwrap();
        assert_eq!(green.len(), 1);
        assert_eq!(green[0].text, "green grass");
    }

    fn store() -> MemoryStore {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        MemoryStore::new(Arc::new(db)).unwrap()
    }

    #[test]
    fn words_are_lower_cased_runs_of_letters_and_digits() {
        let t: Vec<String> = terms("Paris, the capital of FRANCE (2024)! Ünïcode").collect();
        assert_eq!(
            t,
            ["paris", "the", "capital", "of", "france", "2024", "ünïcode"]
        );
        assert_eq!(terms(&"a".repeat(500)).next().unwrap().len(), MAX_TERM);
        assert_eq!(terms(&"é".repeat(100)).next().unwrap().len(), MAX_TERM);
    }

    #[tokio::test]
    async fn recall_ranks_the_best_match_first() {
        let m = store();
        let weather = m
            .store("p", "The weather in Paris is rainy today", "note")
            .await
            .unwrap();
        let capital = m
            .store("p", "Paris is the capital of France", "fact")
            .await
            .unwrap();
        let other = m
            .store("q", "Berlin is the capital of Germany", "fact")
            .await
            .unwrap();
        m.store("q", "Bananas are yellow", "fact").await.unwrap();
        let got = m.recall("capital of France", 10).unwrap();
        let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
        // Both capitals match; France only the first. The weather note
        // shares no word with the query, nor do the bananas.
        assert_eq!(ids, [capital.as_str(), other.as_str()]);
        assert_eq!(got[0].importance, 1.0);
        assert!(
            got[1].importance > 0.0 && got[1].importance < 1.0,
            "{got:?}"
        );
        assert_eq!(
            (got[0].plugin.as_str(), got[0].category.as_str()),
            ("p", "fact")
        );

        let got = m.recall("PARIS weather", 1).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, weather);
        assert_eq!(m.count().unwrap(), 4);
    }

    #[tokio::test]
    async fn rarer_words_weigh_more_and_longer_texts_less() {
        let m = store();
        let short = m.store("p", "rust sandbox", "").await.unwrap();
        let long = m
            .store(
                "p",
                "rust sandbox with many other words that dilute it a lot",
                "",
            )
            .await
            .unwrap();
        for _ in 0..5 {
            m.store("p", "rust is common here", "").await.unwrap();
        }
        let got = m.recall("rust sandbox", 3).unwrap();
        assert_eq!(got[0].id, short);
        assert_eq!(got[1].id, long);
    }

    #[tokio::test]
    async fn a_plugin_cannot_store_more_than_its_share_of_text() {
        let m = store();
        let text = "word ".repeat(MAX_TEXT / 5);
        let fits = (MAX_BYTES_PER_PLUGIN / text.len() as u64) as usize;
        for _ in 0..fits {
            m.store("greedy", &text, "").await.unwrap();
        }
        assert_eq!(
            m.store("greedy", &text, "").await,
            Err(MemoryError::TooMuchText)
        );
        // Another plugin is not affected.
        m.store("modest", "a short note", "").await.unwrap();
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_reasons() {
        let m = store();
        assert_eq!(
            m.store("p", &"a".repeat(MAX_TEXT + 1), "c").await,
            Err(MemoryError::TextTooLong(MAX_TEXT + 1))
        );
        assert_eq!(
            m.store("p", "text", &"c".repeat(200)).await,
            Err(MemoryError::CategoryTooLong(200))
        );
        assert_eq!(m.store("p", "  ..!", "c").await, Err(MemoryError::NoWords));
        assert!(m.recall("", 5).unwrap().is_empty());
        let many: String = (0..65).map(|i| format!("w{i} ")).collect();
        assert_eq!(m.recall(&many, 5), Err(MemoryError::TooManyWords(65)));
        assert_eq!(
            m.recall(&"a".repeat(MAX_TEXT + 1), 5),
            Err(MemoryError::TextTooLong(MAX_TEXT + 1))
        );
        assert!(m.recall("anything", 0).unwrap().is_empty());
        assert_eq!(m.count().unwrap(), 0);
    }
}
