//! The verdicts a soak ends with: every failed call explained by a fault
//! that was active for its plugin, no acknowledged write missing, the
//! supervisor's descriptors, threads and memory flat, nothing left behind,
//! and every plugin serving again once the faults stop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::daemon::Usage;
use crate::faults::{Kind, Window};
use crate::load::Outcome;

/// How long after a fault's effects end a failure is still put down to it
/// (a call that was already on its way when the plugin came back).
const GRACE: Duration = Duration::from_secs(2);

/// Bounds on the supervisor's growth over one life of at least a minute:
/// the median of the last third of its samples (taken every 2 s after 20 s
/// of warming up) against the median of the first third. Medians, because
/// memory swings for a moment when a hot reload reads a Python plugin's
/// 19 MB component. A life of a 10-minute run grows 3 to 6 MiB (the kv
/// data redb caches); a leak shows as a trend that passes these bounds, as
/// the allocator's retention of those components did (56 -> 113 MiB in two
/// minutes) until `prx up` fixed its mmap threshold.
pub const MAX_MORE_FDS: usize = 16;
pub const MAX_MORE_THREADS: usize = 8;
pub const MAX_MORE_RSS_KIB: u64 = 48 * 1024;

/// Lines of the report, and whether every verdict passed.
#[derive(Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub failed: bool,
}

impl Report {
    pub fn verdict(&mut self, pass: bool, what: &str, detail: String) {
        self.failed |= !pass;
        let mark = if pass { "PASS" } else { "FAIL" };
        self.lines.push(format!("{mark} {what}: {detail}"));
    }

    pub fn info(&mut self, line: String) {
        self.lines.push(format!("     {line}"));
    }
}

/// `at` as the UTC time of day (HH:MM:SS.mmm), to find it in the log.
pub fn clock(at: Instant) -> String {
    let now = std::time::SystemTime::now();
    let then = now - Instant::now().saturating_duration_since(at);
    let ms = then
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 86_400_000)
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The fault that explains `outcome`'s failure with `cause`, if any.
fn explained<'a>(outcome: &Outcome, cause: &str, windows: &'a [Window]) -> Option<&'a Window> {
    let plugin = outcome.op.plugin();
    windows.iter().find(|w| {
        let hits = match (&w.plugin, plugin) {
            (None, _) => true,
            (Some(hit), Some(plugin)) => hit == plugin,
            (Some(_), None) => false,
        };
        hits && w.allows(cause) && outcome.end >= w.start && outcome.start <= w.end + GRACE
    })
}

/// Calls made, answered, and failed by cause; each failure must be one a
/// fault explains.
pub fn calls(report: &mut Report, outcomes: &[Outcome], windows: &[Window], began: Instant) {
    let answered = outcomes.iter().filter(|o| o.result.is_ok()).count();
    let mut by_cause: BTreeMap<(&str, bool), usize> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for outcome in outcomes {
        let Err((cause, message)) = &outcome.result else {
            continue;
        };
        let fault = explained(outcome, cause, windows);
        *by_cause
            .entry((cause.as_str(), fault.is_some()))
            .or_default() += 1;
        if fault.is_none() {
            unexplained.push((
                format!("{} {cause}", outcome.op.name()),
                format!(
                    "{} at {:.1} s ({} UTC): {cause}: {message}",
                    outcome.op.name(),
                    outcome.start.duration_since(began).as_secs_f64(),
                    clock(outcome.start)
                ),
            ));
        }
    }
    report.verdict(
        unexplained.is_empty(),
        "calls",
        format!(
            "{} made, {answered} answered, {} failed, {} of them with no fault to explain them",
            outcomes.len(),
            outcomes.len() - answered,
            unexplained.len()
        ),
    );
    for ((cause, expected), n) in by_cause {
        let why = if expected {
            "while its fault was active"
        } else {
            "UNEXPECTED"
        };
        report.info(format!("failed with {cause}: {n} ({why})"));
    }
    // A few of each kind, not the first dozen of one.
    let mut shown: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, line) in &unexplained {
        let n = shown.entry(kind.clone()).or_default();
        *n += 1;
        if *n <= 3 {
            report.info(format!("unexplained: {line}"));
        }
    }
}

/// The faults injected, by kind.
pub fn faults(report: &mut Report, windows: &[Window]) {
    let mut by_kind: BTreeMap<Kind, (usize, Duration)> = BTreeMap::new();
    for w in windows {
        let entry = by_kind.entry(w.kind).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(w.end.duration_since(w.start));
    }
    for (kind, (n, longest)) in by_kind {
        report.info(format!(
            "fault {}: {n} times, effects lasting up to {:.1} s",
            kind.name(),
            longest.as_secs_f64()
        ));
    }
    let stuck: Vec<&Window> = windows
        .iter()
        .filter(|w| w.note.contains("not serving again"))
        .collect();
    report.verdict(
        stuck.is_empty(),
        "recovery from each fault",
        match stuck.first() {
            None => "every plugin hit served again".into(),
            Some(w) => format!(
                "{} after {} at {} UTC: {}",
                w.plugin.as_deref().unwrap_or("all"),
                w.kind.name(),
                clock(w.start),
                w.note
            ),
        },
    );
}

/// The median of `values` (not empty).
fn median<T: Ord + Copy>(mut values: Vec<T>) -> T {
    values.sort_unstable();
    values[values.len() / 2]
}

/// One life of the supervisor, from its samples.
pub fn resources(report: &mut Report, pid: u32, samples: &[(Instant, Usage)], started: Instant) {
    let warm: Vec<Usage> = samples
        .iter()
        .filter(|(at, _)| at.duration_since(started) >= Duration::from_secs(20))
        .map(|(_, u)| *u)
        .collect();
    let span = Duration::from_secs(2 * warm.len() as u64);
    if warm.len() < 30 {
        if let (Some(first), Some(last)) = (warm.first(), warm.last()) {
            report.info(format!(
                "pid {pid} over {} s: fds {} -> {}, threads {} -> {}, RSS {} -> {} MiB (too short a life to judge)",
                span.as_secs(),
                first.fds,
                last.fds,
                first.threads,
                last.threads,
                first.rss_kib / 1024,
                last.rss_kib / 1024
            ));
        }
        return;
    }
    let third = warm.len() / 3;
    let (early, late) = (&warm[..third], &warm[warm.len() - third..]);
    let of = |part: &[Usage], f: fn(&Usage) -> u64| median(part.iter().map(f).collect());
    let fds = (of(early, |u| u.fds as u64), of(late, |u| u.fds as u64));
    let threads = (
        of(early, |u| u.threads as u64),
        of(late, |u| u.threads as u64),
    );
    let rss = (of(early, |u| u.rss_kib), of(late, |u| u.rss_kib));
    let peak = warm.iter().map(|u| u.rss_kib).max().unwrap_or(0);
    let flat = fds.1 <= fds.0 + MAX_MORE_FDS as u64
        && threads.1 <= threads.0 + MAX_MORE_THREADS as u64
        && rss.1 <= rss.0 + MAX_MORE_RSS_KIB;
    report.verdict(
        flat,
        "supervisor resources flat",
        format!(
            "pid {pid} over {} s, medians of the first and last third: fds {} -> {}, threads {} -> {}, RSS {} -> {} MiB (peak {} MiB); bounds +{MAX_MORE_FDS} fds, +{MAX_MORE_THREADS} threads, +{} MiB",
            span.as_secs(),
            fds.0,
            fds.1,
            threads.0,
            threads.1,
            rss.0 / 1024,
            rss.1 / 1024,
            peak / 1024,
            MAX_MORE_RSS_KIB / 1024
        ),
    );
}
