//! Disk faults under the kv store, on real small filesystems: a tmpfs that
//! fills up, and an ext4 filesystem on a loop device whose backing file
//! cannot grow (so its syncs fail with EIO). Each runs the real supervisor
//! and workers in a mount namespace of its own (the test binary runs
//! itself again under `unshare`; mounting needs root, as CI has), so
//! nothing it mounts is seen outside or outlives it.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, tool_manifest};
use prx_supervisor::Supervisor;

/// Set in the copy of the test binary that runs inside the namespace.
const INSIDE: &str = "PRX_DISK_FAULT_INSIDE";

/// Runs the ignored test `inner` of this module again, alone, in a private
/// mount namespace, and fails with its output if it fails.
fn in_own_mount_namespace(inner: &str) {
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(["--exact", &format!("disk_faults::{inner}")])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("unshare (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains("1 passed"),
        "{inner} in its own mount namespace (needs root): {text}"
    );
}

fn mount_tmpfs(at: &Path, size: &str) {
    std::fs::create_dir_all(at).expect("mount point");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .expect("mount runs");
    assert!(status.success(), "mount tmpfs on {}", at.display());
}

/// Fills the filesystem of `dir` with a file, leaving about `leave` bytes.
fn fill(dir: &Path, leave: u64) -> std::path::PathBuf {
    let stat = nix::sys::statvfs::statvfs(dir).expect("statvfs");
    let free = stat.blocks_available() * stat.fragment_size();
    let filler = dir.join("filler");
    let size = free.saturating_sub(leave) as usize;
    std::fs::write(&filler, vec![0xAB_u8; size]).expect("the filler");
    filler
}

fn kv_manifest() -> String {
    tool_manifest(
        "kv-tool",
        "kv",
        "[permissions]\nrequired = [\"kv\"]\n\n[resources]\nmax_kv_storage_kb = 1_000_000\n",
    )
}

/// `kv-tool`'s answer to one operation: `Ok(value)` or `Err(message)`.
async fn kv(sup: &Supervisor, args: serde_json::Value) -> Result<serde_json::Value, String> {
    let out = sup
        .call_tool("kv", &args.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let out: serde_json::Value = serde_json::from_str(&out).expect("kv-tool answers JSON");
    match out.get("err") {
        Some(e) => Err(e.as_str().unwrap_or_default().to_owned()),
        None => Ok(out["ok"].clone()),
    }
}

async fn set(sup: &Supervisor, key: &str, size: usize) -> Result<(), String> {
    kv(
        sup,
        serde_json::json!({ "op": "set", "key": key, "size": size }),
    )
    .await
    .map(|_| ())
}

/// Every key in `keys` holds a value of `size` bytes.
async fn all_there(sup: &Supervisor, keys: &[String], size: usize) {
    for key in keys {
        let value = sup.kv_get("kv-tool", key).expect("a read");
        assert_eq!(
            value.map(|v| v.len()),
            Some(size),
            "acknowledged write {key} is missing"
        );
    }
}

/// Values of this size: a few hundred fill a log file.
const SIZE: usize = 8 << 10;

/// Starts a supervisor with `kv-tool` on `env`, writes 20 keys and waits
/// for a checkpoint to move them into redb (a read of them then needs
/// redb, not the store's memory). Returns the keys written.
async fn start_with_checkpointed_keys(env: &Env) -> (Supervisor, Vec<String>) {
    env.add("kv-tool", "kv-tool", &kv_manifest());
    let sup = Supervisor::start(env.config()).await.expect("start");
    let mut acked = Vec::new();
    for i in 0..20 {
        let key = format!("old{i}");
        set(&sup, &key, SIZE)
            .await
            .expect("a write on a disk with room");
        acked.push(key);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    (sup, acked)
}

/// Writes new keys until one is refused; returns the refusal, with every
/// acknowledged key added to `acked`.
async fn write_until_refused(sup: &Supervisor, acked: &mut Vec<String>) -> String {
    loop {
        let key = format!("k{}", acked.len());
        match set(sup, &key, SIZE).await {
            Ok(()) => acked.push(key),
            Err(e) => return e,
        }
        assert!(acked.len() < 20_000, "no write was ever refused");
    }
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_once_freed() {
    in_own_mount_namespace("full_disk_inside");
}

#[tokio::test]
#[ignore = "run by a_full_disk_refuses_writes_keeps_reads_and_recovers_once_freed, in a mount namespace"]
async fn full_disk_inside() {
    assert!(std::env::var(INSIDE).is_ok(), "run through the test above");
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let env = Env::new();
    // Room for the two 4 MiB log files, redb, and what the test fills.
    mount_tmpfs(&env.state(), "64m");
    let (sup, mut acked) = start_with_checkpointed_keys(&env).await;
    let filler = fill(&env.state(), 256 << 10);

    // Writes go on until the disk is full, then are refused, each with a
    // clear error; none half-done.
    let refusal = write_until_refused(&sup, &mut acked).await;
    assert!(
        refusal.contains("No space left on device") && refusal.contains("nothing was written"),
        "{refusal}"
    );
    assert!(!acked.is_empty());
    // Refused again, not stuck. A checkpoint has failed on the full disk
    // meanwhile (which leaves redb refusing everything until it is opened
    // again); reads go on, of what redb holds too, and every acknowledged
    // write is there.
    assert!(set(&sup, "again", SIZE).await.is_err());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    all_there(&sup, &acked, SIZE).await;

    // Space again: writes work again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    while let Err(e) = set(&sup, "after", SIZE).await {
        assert!(
            freed.elapsed() < Duration::from_secs(20),
            "writes did not come back after space was freed: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acked.push("after".into());
    // The memory store shares the database, which the failed checkpoint
    // left refusing everything until it was opened again: it works too.
    sup.store_memory("stored after the disk was freed", "test")
        .await
        .expect("the memory store works again");
    // More than a log file holds: only checkpoints into redb make room.
    for i in 0..700 {
        let key = format!("new{i}");
        set(&sup, &key, SIZE)
            .await
            .unwrap_or_else(|e| panic!("write {i} after space was freed: {e}"));
        acked.push(key);
    }
    all_there(&sup, &acked, SIZE).await;

    // And nothing acknowledged is lost across a restart.
    sup.shutdown().await;
    // The store closes once its last handle is gone.
    drop(sup);
    let sup = Supervisor::start(env.config()).await.expect("restart");
    all_there(&sup, &acked, SIZE).await;
    sup.shutdown().await;
}

#[test]
fn a_failing_sync_refuses_writes_says_to_restart_and_loses_nothing() {
    in_own_mount_namespace("failing_sync_inside");
}

#[tokio::test]
#[ignore = "run by a_failing_sync_refuses_writes_says_to_restart_and_loses_nothing, in a mount namespace"]
async fn failing_sync_inside() {
    assert!(std::env::var(INSIDE).is_ok(), "run through the test above");
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let env = Env::new();
    // An ext4 filesystem (no journal) on a loop device whose backing file
    // is sparse, on a tmpfs smaller than the filesystem: once the tmpfs is
    // full, the device fails every write to a block it has not stored yet,
    // and ext4 reports that as EIO from fsync.
    let backing = env.state().with_file_name("backing");
    mount_tmpfs(&backing, "48m");
    let image = backing.join("disk.img");
    let run = |program: &str, args: &[&str]| {
        let status = Command::new(program).args(args).status().unwrap();
        assert!(status.success(), "{program} {args:?}");
    };
    run("truncate", &["-s", "256M", image.to_str().unwrap()]);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-O", "^has_journal", image.to_str().unwrap()],
    );
    std::fs::create_dir_all(env.state()).unwrap();
    run(
        "mount",
        &[
            "-o",
            "loop",
            image.to_str().unwrap(),
            env.state().to_str().unwrap(),
        ],
    );
    let (sup, mut acked) = start_with_checkpointed_keys(&env).await;
    let filler = fill(&backing, 0);

    // Writes go on (into log space the disk already holds) until a sync
    // fails: redb's, at a checkpoint (the database is closed, and opened
    // again once the device allows), or the log's (the store cannot know
    // what reached the disk, and says to restart). From then on every
    // write is refused, saying which.
    let before = acked.len();
    let failure = write_until_refused(&sup, &mut acked).await;
    let says_what_to_do = |e: &str| {
        e.contains("restart the supervisor")
            || e.contains("opens again by itself once the disk allows")
    };
    assert!(says_what_to_do(&failure), "{failure}");
    let again = set(&sup, "again", SIZE).await.unwrap_err();
    assert!(says_what_to_do(&again), "{again}");
    // What was acknowledged since the checkpoint is read from the store's
    // memory meanwhile.
    all_there(&sup, &acked[before..], SIZE).await;

    // The device has room again: a closed database opens again by itself;
    // a failed log sync needs the restart it asked for. Either way nothing
    // acknowledged is lost, and writes work.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let mut back = false;
    while freed.elapsed() < Duration::from_secs(5) {
        if set(&sup, "after", SIZE).await.is_ok() {
            back = true;
            acked.push("after".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("writes back without a restart: {back}");
    sup.shutdown().await;
    drop(sup);
    let sup = Supervisor::start(env.config()).await.expect("restart");
    all_there(&sup, &acked, SIZE).await;
    set(&sup, "after-restart", SIZE)
        .await
        .expect("writes work after the restart");
    sup.shutdown().await;
}
