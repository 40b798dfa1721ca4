//! A plugin's kv in JetStream key-value (`[kv] backend = "jetstream"`):
//! the same keys on every node the plugin runs on.
//!
//! Each plugin has its own bucket, `prx-kv-<plugin>`, so no key can reach
//! another plugin's: the bucket comes from the plugin's identity, and keys
//! are escaped ([`super::subjects::encode_key`]) so no key can name
//! another subject. The promises are the embedded store's:
//!
//! - **quota**: a write that would take the bucket past the plugin's
//!   `max_kv_storage_kb` is refused and nothing is written. The bucket's
//!   size is JetStream's count (the stored subject, headers and value of
//!   each key's last write, and the markers of deleted keys); the bucket's
//!   `max_bytes` is that quota, so the server refuses what two nodes
//!   racing each other would let through;
//! - **atomic increment**: read the counter and its revision, write the
//!   sum only if the revision is still the last (compare-and-set), and try
//!   again if another node wrote first: no increment is lost;
//! - **durability**: a write is answered once JetStream acknowledged it,
//!   that is once it is stored (on disk, with `sync_interval: always` in
//!   the server's `jetstream` block; see docs/cluster.md).

use bytes::Bytes;
use futures_util::StreamExt;

use async_nats::jetstream::kv::{Config, CreateErrorKind, Operation, Store, UpdateErrorKind};

use super::subjects::{bucket, decode_key, encode_key};
use super::{Cluster, ClusterError};
use crate::services::kv::{KvError, MAX_KEY_LEN};

/// Tries of a compare-and-set before an increment gives up.
const MAX_CAS_TRIES: usize = 1000;
/// Tries of a delete whose key another node keeps writing.
const MAX_DELETE_TRIES: usize = 10;
/// What JetStream stores with each message beyond its subject and value
/// (sequence, timestamp, lengths, checksum, the kv headers): an
/// estimate, for the numbers of a refusal; the server's `max_bytes` is
/// the limit.
const MESSAGE_OVERHEAD: u64 = 64;

/// Room left in a message for the kv headers JetStream adds.
const HEADERS_ALLOWANCE: usize = 128;

/// One plugin's bucket; cheap to clone.
#[derive(Clone)]
pub struct SharedKv {
    store: Store,
    /// The bucket's stream, for its size (the store's own status is the
    /// size when it was opened).
    stream: async_nats::jetstream::stream::Stream<()>,
    bucket: String,
    quota: u64,
    /// The server's largest message.
    max_payload: usize,
}

impl std::fmt::Debug for SharedKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKv")
            .field("bucket", &self.bucket)
            .finish()
    }
}

fn nats(e: impl std::fmt::Display) -> KvError {
    KvError::Storage(format!(
        "the cluster's JetStream kv failed ({e}); is the NATS server up, with JetStream on (docs/cluster.md)?"
    ))
}

/// Every key a plugin gives is held to the embedded store's limit before
/// it reaches NATS: escaped, a longer one could make a subject past the
/// server's control-line limit, and the server would drop the whole
/// connection of this node.
fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KvError::KeyTooLong(key.len()));
    }
    Ok(())
}

impl Cluster {
    /// The bucket of `plugin` as it is, created if it does not exist yet
    /// (for a version being readied: its quota takes effect on the server
    /// only if it takes over, through [`Cluster::plugin_kv`]).
    pub async fn plugin_kv_as_is(
        &self,
        plugin: &str,
        quota: u64,
    ) -> Result<SharedKv, ClusterError> {
        match self.existing_plugin_kv(plugin).await {
            Ok(Some(mut store)) => {
                store.quota = quota;
                Ok(store)
            }
            Ok(None) => self.plugin_kv(plugin, quota).await,
            Err(e) => Err(ClusterError::JetStream(e.to_string())),
        }
    }

    /// The bucket of `plugin`, created on first use and resized when its
    /// quota (bytes) changed.
    pub async fn plugin_kv(&self, plugin: &str, quota: u64) -> Result<SharedKv, ClusterError> {
        let bucket = bucket(plugin);
        let config = Config {
            bucket: bucket.clone(),
            description: format!("prx kv of plugin {plugin}"),
            history: 1,
            // 0 or less is "no limit" to JetStream: a quota of nothing is
            // refused here instead (see `set`).
            max_bytes: i64::try_from(quota.max(1)).unwrap_or(i64::MAX),
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: self.config().kv_replicas.max(1),
            ..Default::default()
        };
        let store = self
            .jetstream()
            .create_or_update_key_value(config)
            .await
            .map_err(|e| {
                ClusterError::JetStream(format!(
                    "the kv bucket {bucket} of plugin {plugin}: {e}; the NATS server must run with JetStream on (`-js`, or a `jetstream` block in its config)"
                ))
            })?;
        let stream = self.bucket_stream(&bucket).await?;
        Ok(SharedKv {
            store,
            stream,
            bucket,
            quota,
            max_payload: self.client().server_info().max_payload,
        })
    }
}

impl Cluster {
    /// The bucket of `plugin` when it has one, for operators' reads (which
    /// create nothing). Its quota is left at zero: it is not for writes.
    pub async fn existing_plugin_kv(&self, plugin: &str) -> Result<Option<SharedKv>, KvError> {
        let bucket = bucket(plugin);
        match self.jetstream().get_key_value(bucket.clone()).await {
            Ok(store) => Ok(Some(SharedKv {
                store,
                stream: self
                    .bucket_stream(&bucket)
                    .await
                    .map_err(|e| KvError::Storage(e.to_string()))?,
                bucket,
                quota: 0,
                max_payload: self.client().server_info().max_payload,
            })),
            Err(e) if e.kind() == async_nats::jetstream::context::KeyValueErrorKind::GetBucket => {
                Ok(None)
            }
            Err(e) => Err(nats(e)),
        }
    }
}

impl Cluster {
    /// The stream behind a bucket (JetStream names it `KV_<bucket>`).
    async fn bucket_stream(
        &self,
        bucket: &str,
    ) -> Result<async_nats::jetstream::stream::Stream<()>, ClusterError> {
        self.jetstream()
            .get_stream_no_info(format!("KV_{bucket}"))
            .await
            .map_err(|e| ClusterError::JetStream(format!("bucket {bucket}: {e}")))
    }
}

impl SharedKv {
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if check_key(key).is_err() {
            return Ok(None);
        }
        let value = self.store.get(encode_key(key)).await.map_err(nats)?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// Keys starting with `prefix`, in order.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let mut keys = self.store.keys().await.map_err(nats)?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(nats)?;
            if let Some(key) = decode_key(&key).filter(|k| k.starts_with(prefix)) {
                out.push(key);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Bytes the bucket holds now, as JetStream counts them.
    pub async fn usage(&self) -> Result<u64, KvError> {
        let info = self.stream.get_info().await.map_err(nats)?;
        Ok(info.state.bytes)
    }

    /// What JetStream stores for `value` at `key`, as counted here.
    fn counted(&self, key: &str, value: usize) -> u64 {
        (self.bucket.len() + 5 + encode_key(key).len() + value) as u64 + MESSAGE_OVERHEAD
    }

    /// Refuses, before any I/O, a write the server could never take: a key
    /// past the limit, a value past one message. The quota is the
    /// server's to enforce (the bucket's `max_bytes`, atomic across nodes,
    /// a rewrite counted once); see [`Self::refused`].
    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_key(key)?;
        // The server's limit is on headers and value together; the kv
        // headers are a few dozen bytes.
        let max_payload = self.max_payload.saturating_sub(HEADERS_ALLOWANCE);
        if value.len() > max_payload {
            return Err(KvError::Storage(format!(
                "a value of {} bytes is larger than the cluster's NATS server takes in one message ({max_payload} bytes here; its max_payload); store it in parts",
                value.len()
            )));
        }
        Ok(())
    }

    /// The server refused a write: when the bucket cannot hold it, that is
    /// the quota, said with its numbers as the embedded store says them.
    async fn refused(&self, key: &str, value: &[u8], e: impl std::fmt::Display) -> KvError {
        let needed = self.counted(key, value.len());
        match self.usage().await {
            Ok(used) if used.saturating_add(needed) > self.quota => KvError::QuotaExceeded {
                needed,
                used,
                quota: self.quota,
            },
            _ => nats(e),
        }
    }

    /// Stores a value; returns once JetStream acknowledged it.
    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.check_value(key, &value)?;
        let value = Bytes::from(value);
        match self.store.put(encode_key(key), value.clone()).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.refused(key, &value, e).await),
        }
    }

    /// Removes a key; true when it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, KvError> {
        if check_key(key).is_err() {
            return Ok(false);
        }
        let encoded = encode_key(key);
        let mut last = None;
        for _ in 0..MAX_DELETE_TRIES {
            let Some(entry) = self.store.entry(encoded.clone()).await.map_err(nats)? else {
                return Ok(false);
            };
            if entry.operation != Operation::Put {
                return Ok(false);
            }
            match self
                .store
                .delete_expect_revision(encoded.clone(), Some(entry.revision))
                .await
            {
                Ok(()) => return Ok(true),
                // Written by another node meanwhile (the revision is no
                // longer the last), or refused: look again.
                Err(e) => last = Some(e.to_string()),
            }
        }
        Err(nats(last.unwrap_or_default()))
    }

    /// Adds `delta` to a decimal counter by compare-and-set on its
    /// revision; returns the new value.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        check_key(key)?;
        let encoded = encode_key(key);
        for _ in 0..MAX_CAS_TRIES {
            let entry = self.store.entry(encoded.clone()).await.map_err(nats)?;
            let (current, revision) = match &entry {
                None => (0, None),
                Some(e) if e.operation != Operation::Put => (0, Some(e.revision)),
                Some(e) => {
                    let n = std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|t| t.trim().parse::<i64>().ok())
                        .ok_or_else(|| KvError::NotANumber { key: key.into() })?;
                    (n, Some(e.revision))
                }
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| KvError::Overflow { key: key.into() })?;
            let bytes = Bytes::from(next.to_string());
            self.check_value(key, &bytes)?;
            let lost_race = match revision {
                None => match self.store.create(encoded.clone(), bytes.clone()).await {
                    Ok(_) => return Ok(next),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => true,
                    Err(e) => return Err(self.refused(key, &bytes, e).await),
                },
                Some(revision) => {
                    match self
                        .store
                        .update(encoded.clone(), bytes.clone(), revision)
                        .await
                    {
                        Ok(_) => return Ok(next),
                        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => true,
                        Err(e) => return Err(self.refused(key, &bytes, e).await),
                    }
                }
            };
            debug_assert!(lost_race);
        }
        Err(nats(format!(
            "the counter {key:?} kept changing: {MAX_CAS_TRIES} compare-and-set tries lost"
        )))
    }
}
