//! The built-in memory store: text entries in the supervisor's redb
//! database, recalled by BM25 relevance.
//!
//! Every entry records the plugin that stored it. Entries are indexed by
//! word (lower-cased runs of letters and digits) in an inverted index,
//! `(term, entry id) -> term frequency`, kept in the same transaction as
//! the entry, so `recall` reads only the postings of the query's words.
//! The memory is shared, as in PRX: a plugin granted `memory` recalls what
//! any plugin stored; the operator decides who gets it.
//!
//! A recall reads at most [`MAX_POSTINGS_PER_RECALL`] postings, however
//! many entries share the query's words (each plugin may store 100,000).
//! Below that the ranking is exact; above it the rarer words are read in
//! full and the common ones only for their newest entries. Plugins recall
//! through [`MemoryStore::recall_for`], on the blocking pool and one recall
//! at a time per plugin, so a plugin recalling in a loop cannot hold the
//! async threads that answer every other plugin, heartbeats and the API.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadOnlyTable, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::kv::Db;

mod write;
#[cfg(test)]
use write::insert_in;
use write::{indexed, insert, remove};

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
/// Most postings one recall reads, all the query's words together.
///
/// Each posting read costs an index step and, the first time its entry is
/// met, an entry read: without a cap, a query of 64 words that 100,000
/// entries of every plugin share would read millions of each. 20,000 is a
/// few milliseconds of work, and more than a normal memory's postings for
/// a normal query, whose ranking stays exact. Above it the ranking is
/// best-effort: the budget goes to the rarer words first, which are read
/// in full (they decide the ranking: a common word weighs next to
/// nothing), and each common word is read for its newest entries only,
/// its frequency estimated from them.
pub const MAX_POSTINGS_PER_RECALL: usize = 20_000;
/// Most recalls of one plugin running at once.
///
/// A worker makes one host call at a time, but a recall outlives a worker
/// that was killed or replaced while waiting for it; without this gate, a
/// plugin crash-looping through recalls, or two versions of it during a
/// reload, would take a blocking thread (and a core) each time. The others
/// wait their turn without holding a thread.
pub const MAX_RECALLS_AT_ONCE_PER_PLUGIN: usize = 1;
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
    /// A commit failed in a way that leaves redb refusing everything until
    /// it is opened again (which the store then asks for).
    #[error("storage failed: {0}")]
    Disk(String),
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

/// The one field of a [`StoredMemory`] that scoring needs: reading it
/// skips over the text instead of copying it.
#[derive(Deserialize)]
struct EntryLength {
    terms: u64,
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
    /// The kv store's database (reopened by it after a disk error).
    db: Arc<Db>,
    /// One gate per plugin name, letting through
    /// [`MAX_RECALLS_AT_ONCE_PER_PLUGIN`] of its recalls.
    recall_gates: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
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
    pub fn new(db: Arc<Db>) -> Result<Self, MemoryError> {
        let txn = db
            .current()
            .map_err(storage)?
            .begin_write()
            .map_err(storage)?;
        txn.open_table(ENTRIES).map_err(storage)?;
        txn.open_table(POSTINGS).map_err(storage)?;
        txn.open_table(STATS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Self {
            db,
            recall_gates: Arc::default(),
        })
    }

    /// The database as it is now (see [`Db`]).
    fn db(&self) -> Result<Arc<Database>, MemoryError> {
        self.db.current().map_err(storage)
    }

    /// Stores an entry for `plugin`; returns its id once it is durable.
    pub async fn store(
        &self,
        plugin: &str,
        text: &str,
        category: &str,
    ) -> Result<String, MemoryError> {
        let (entry, tf) = indexed(plugin, text, category)?;
        self.durably(move |db| insert(db, &entry, &tf))
            .await
            .map(|id| id.to_string())
    }

    /// Runs a write with a durable commit off the async threads (it waits
    /// for the disk); after a disk error that latched, has the database
    /// opened again.
    async fn durably<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Database) -> Result<T, MemoryError> + Send + 'static,
    ) -> Result<T, MemoryError> {
        let current = self.db()?;
        let db = current.clone();
        let result = tokio::task::spawn_blocking(move || write(&db))
            .await
            .map_err(storage)?;
        if let Err(MemoryError::Disk(_)) = &result {
            let db = self.db.clone();
            tokio::task::spawn_blocking(move || db.reopen(current));
        }
        result
    }

    /// [`recall`](Self::recall) for `plugin`, off the async threads.
    ///
    /// A recall is CPU work of up to [`MAX_POSTINGS_PER_RECALL`] postings:
    /// on a runtime thread, a plugin recalling in a loop would stall the
    /// calls of every other plugin, heartbeats and the API. It runs on the
    /// blocking pool instead, at most [`MAX_RECALLS_AT_ONCE_PER_PLUGIN`] at
    /// a time per plugin.
    pub async fn recall_for(
        &self,
        plugin: &str,
        query: &str,
        limit: u32,
    ) -> Result<Vec<Recalled>, MemoryError> {
        let permit = self
            .recall_gate(plugin)
            .acquire_owned()
            .await
            .map_err(storage)?;
        let store = self.clone();
        let query = query.to_owned();
        tokio::task::spawn_blocking(move || {
            // Held until the recall ends, even if the caller stops waiting
            // for it (its worker died): the next recall waits for this one.
            let _permit = permit;
            store.recall(&query, limit)
        })
        .await
        .map_err(storage)?
    }

    /// The gate `plugin`'s recalls pass, made on its first recall.
    fn recall_gate(&self, plugin: &str) -> Arc<Semaphore> {
        let mut gates = self.recall_gates.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .entry(plugin.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_RECALLS_AT_ONCE_PER_PLUGIN)))
            .clone()
    }

    /// The `limit` entries most relevant to `query`, best first. Entries
    /// that share no word with the query are not returned.
    ///
    /// Blocks while it reads up to [`MAX_POSTINGS_PER_RECALL`] postings:
    /// async code calls [`recall_for`](Self::recall_for).
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
        let txn = self.db()?.begin_read().map_err(storage)?;
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
        let next_id = stat("next_id")?;
        let postings = txn.open_table(POSTINGS).map_err(storage)?;
        let entries = txn.open_table(ENTRIES).map_err(storage)?;
        let read = read_postings(&postings, &query_terms, MAX_POSTINGS_PER_RECALL)?;
        // Entry lengths, read once per entry; `None` for a missing entry.
        let mut lengths: HashMap<u64, Option<f64>> = HashMap::new();
        let mut scores: HashMap<u64, f64> = HashMap::new();
        for word in &read {
            let df = word.frequency(count, next_id);
            let idf = (1.0 + (count as f64 - df + 0.5) / (df + 0.5)).ln();
            for &(id, tf) in &word.hits {
                let len = match lengths.entry(id) {
                    Entry::Occupied(known) => *known.get(),
                    Entry::Vacant(new) => *new.insert(entry_length(&entries, id)?),
                };
                let Some(len) = len else {
                    continue;
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
        let mut found = Vec::with_capacity(ranked.len());
        for (id, score) in ranked {
            let Some(entry) = stored(&entries, id)? else {
                continue;
            };
            found.push(Recalled {
                id: id.to_string(),
                text: entry.text,
                category: entry.category,
                plugin: entry.plugin,
                score,
                importance: if best > 0.0 { score / best } else { 0.0 },
            });
        }
        Ok(found)
    }

    /// Removes the entry `id` (as `store` returned it) and its index
    /// postings; true when it existed.
    pub async fn forget(&self, id: &str) -> Result<bool, MemoryError> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(false);
        };
        self.durably(move |db| remove(db, id)).await
    }

    /// Entries stored (all plugins).
    pub fn count(&self) -> Result<u64, MemoryError> {
        let txn = self.db()?.begin_read().map_err(storage)?;
        let stats = txn.open_table(STATS).map_err(storage)?;
        Ok(stats
            .get("count")
            .map_err(storage)?
            .map(|v| v.value())
            .unwrap_or(0))
    }
}

/// The postings of one query word that a recall read.
#[derive(Debug)]
struct WordPostings {
    /// `(entry id, term frequency)`, newest entry first.
    hits: Vec<(u64, u32)>,
    /// Every posting of the word was read.
    complete: bool,
}

impl WordPostings {
    /// How many entries hold the word (the BM25 document frequency):
    /// exact when every posting was read; otherwise extrapolated from the
    /// newest ones read, as if the word were spread evenly over the ids
    /// given so far (`next_id` is the last).
    fn frequency(&self, count: u64, next_id: u64) -> f64 {
        let read = self.hits.len() as f64;
        match self.hits.last() {
            Some(&(oldest, _)) if !self.complete => {
                let span = next_id.saturating_sub(oldest) + 1;
                (read * next_id as f64 / span as f64)
                    .min(count as f64)
                    .max(read)
            }
            _ => read,
        }
    }
}

/// The postings of each of `words`, newest entry first, at most `budget`
/// in all.
///
/// The budget is shared out in rounds, each giving every word not yet
/// read in full an equal part of what is left. A word with fewer postings
/// than its part is read in full and leaves the rest to the others, so
/// the rarer words are complete and the common ones stop at about the same
/// depth. When all the words' postings fit, all are complete. Rounds end
/// when a part would be empty: at most one more than there are words
/// (each word also looks one posting past its part per round, to learn
/// whether it is done; that one is not kept).
fn read_postings(
    postings: &ReadOnlyTable<(&'static str, u64), u32>,
    words: &[String],
    budget: usize,
) -> Result<Vec<WordPostings>, MemoryError> {
    let mut read: Vec<WordPostings> = words
        .iter()
        .map(|_| WordPostings {
            hits: Vec::new(),
            complete: false,
        })
        .collect();
    let mut left = budget;
    loop {
        let open = read.iter().filter(|w| !w.complete).count();
        let share = left.checked_div(open).unwrap_or(0);
        if share == 0 {
            return Ok(read);
        }
        for (word, got) in words.iter().zip(&mut read) {
            if !got.complete {
                left -= read_more(postings, word, got, share)?;
            }
        }
    }
}

/// Up to `share` more postings of `word`, older than those in `got`, and
/// whether any are left; returns how many it added.
fn read_more(
    postings: &ReadOnlyTable<(&'static str, u64), u32>,
    word: &str,
    got: &mut WordPostings,
    share: usize,
) -> Result<usize, MemoryError> {
    let highest = match got.hits.last() {
        None => u64::MAX,
        Some(&(oldest, _)) => match oldest.checked_sub(1) {
            Some(below) => below,
            None => {
                got.complete = true;
                return Ok(0);
            }
        },
    };
    let before = got.hits.len();
    // One more than the share, only to learn whether any are left.
    for posting in postings
        .range((word, 0)..=(word, highest))
        .map_err(storage)?
        .rev()
        .take(share + 1)
    {
        let (key, tf) = posting.map_err(storage)?;
        got.hits.push((key.value().1, tf.value()));
    }
    if got.hits.len() - before > share {
        got.hits.pop();
    } else {
        got.complete = true;
    }
    Ok(got.hits.len() - before)
}

/// The BM25 length of entry `id`, or `None` if there is no such entry.
fn entry_length(
    entries: &ReadOnlyTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Option<f64>, MemoryError> {
    let Some(raw) = entries.get(id).map_err(storage)? else {
        return Ok(None);
    };
    let entry: EntryLength = serde_json::from_slice(raw.value()).map_err(storage)?;
    Ok(Some(entry.terms as f64))
}

/// Entry `id` as stored, or `None` if there is no such entry.
fn stored(
    entries: &ReadOnlyTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Option<StoredMemory>, MemoryError> {
    let Some(raw) = entries.get(id).map_err(storage)? else {
        return Ok(None);
    };
    serde_json::from_slice(raw.value())
        .map(Some)
        .map_err(storage)
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
        MemoryStore::new(Db::new(db, None)).unwrap()
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

    /// Stores `texts` for `plugin` in one transaction, through the same
    /// checks and index as `store`: a durable commit per entry would make
    /// the tests with 100,000 entries slow.
    fn store_many(m: &MemoryStore, plugin: &str, texts: impl IntoIterator<Item = String>) {
        let txn = m.db.current().unwrap().begin_write().unwrap();
        for text in texts {
            let (entry, tf) = indexed(plugin, &text, "").unwrap();
            insert_in(&txn, &entry, &tf).unwrap();
        }
        txn.commit().unwrap();
    }

    /// 30,000 entries sharing `common`; five of them, from the oldest to
    /// recent ones, also hold `rare`.
    fn common_and_rare() -> MemoryStore {
        let m = store();
        store_many(
            &m,
            "p",
            (0..30_000).map(|i| {
                if i % 7_000 == 0 {
                    format!("common rare {i}")
                } else {
                    format!("common {i}")
                }
            }),
        );
        m
    }

    #[test]
    fn one_recall_reads_at_most_its_budget_of_postings_and_the_rare_words_in_full() {
        let m = common_and_rare();
        let txn = m.db.current().unwrap().begin_read().unwrap();
        let postings = txn.open_table(POSTINGS).unwrap();
        let words = ["common".to_string(), "rare".to_string()];

        let read = read_postings(&postings, &words, MAX_POSTINGS_PER_RECALL).unwrap();
        let total: usize = read.iter().map(|w| w.hits.len()).sum();
        assert_eq!(total, MAX_POSTINGS_PER_RECALL);
        let rare: Vec<u64> = read[1].hits.iter().map(|(id, _)| *id).collect();
        assert!(read[1].complete);
        assert_eq!(rare, [28_001, 21_001, 14_001, 7_001, 1]);
        // The common word got the rest of the budget, newest entries first.
        assert!(!read[0].complete);
        assert_eq!(read[0].hits.len(), MAX_POSTINGS_PER_RECALL - 5);
        assert_eq!(read[0].hits[0], (30_000, 1));
        // Its frequency is estimated from the part read: here, exactly.
        assert_eq!(read[0].frequency(30_000, 30_000), 30_000.0);

        // With the budget for every posting, every word is read in full
        // and the ranking is exact.
        let read = read_postings(&postings, &words, 30_005).unwrap();
        assert!(read.iter().all(|w| w.complete));
        assert_eq!(read[0].hits.len(), 30_000);
        assert_eq!(read[1].hits.len(), 5);
    }

    #[test]
    fn a_word_shared_by_more_entries_than_the_budget_still_recalls_the_best_matches() {
        let m = common_and_rare();
        // The rare word is read in full: all five of its entries come
        // first, the oldest too, past the depth the common word is read to.
        let got = m.recall("common rare", 5).unwrap();
        let mut ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["1", "14001", "21001", "28001", "7001"], "{got:?}");
        // Alone, the common word ranks as exact BM25 would: the shortest
        // entries, newest first on a tie.
        let got = m.recall("common", 3).unwrap();
        let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["30000", "29999", "29998"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recall_over_100k_entries_sharing_their_words_does_not_stall_the_runtime() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::time::{Duration, Instant};

        const QUERY: &str = "every entry shares these same seven words";
        let m = store();
        store_many(
            &m,
            "hoarder",
            (0..MAX_ENTRIES_PER_PLUGIN).map(|i| format!("{QUERY} {i}")),
        );
        assert_eq!(m.count().unwrap(), MAX_ENTRIES_PER_PLUGIN);
        let stop = Arc::new(AtomicBool::new(false));
        let recalls = Arc::new(AtomicUsize::new(0));
        // Two plugins recalling in a loop, through the broker's call, as
        // many tasks as the runtime has threads.
        let loops: Vec<_> = ["hostile-a", "hostile-b"]
            .into_iter()
            .map(|plugin| {
                let (m, stop, recalls) = (m.clone(), stop.clone(), recalls.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let found = m.recall_for(plugin, QUERY, 10).await.unwrap();
                        assert_eq!(found.len(), 10);
                        recalls.fetch_add(1, Ordering::Relaxed);
                        // A worker's next call comes in a new frame.
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        while recalls.load(Ordering::Relaxed) < 2 {
            assert!(
                !loops.iter().any(|l| l.is_finished()),
                "a recall loop ended"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }

        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(10)).await;
            worst = worst.max(start.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
        for l in loops {
            l.await.unwrap();
        }
        assert!(
            worst < Duration::from_millis(100),
            "a 10 ms sleep took {worst:?} while two plugins recalled"
        );
    }
}
