//! `/metrics`: the Prometheus text format (version 0.0.4), written at
//! scrape time from the supervisor's own counters.
//!
//! The stats live in [`crate::metrics::PluginStats`] because the status API and the
//! console read them too; the exposition is a rendering of them, so it is
//! written here rather than mirrored into a client library's registry of
//! live instruments.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};

use crate::Supervisor;
use crate::metrics::{Counters, LATENCY_BUCKETS};

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Text being written: each family's `# HELP` and `# TYPE`, then its
/// samples.
#[derive(Debug, Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// Counter families with one sample per key of `rows`, the key under
    /// `label`, each sample's value read from its row by the family.
    fn counters<T>(
        &mut self,
        label: &str,
        rows: &BTreeMap<String, T>,
        families: &[(&str, &str, Read<T>)],
    ) {
        for (name, help, read) in families {
            self.family(name, "counter", help);
            for (key, row) in rows {
                self.sample(name, &[(label, key)], read(row));
            }
        }
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Floats as Prometheus reads them.
fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// Events that reached one subscriber, summed over its subscriptions.
#[derive(Debug, Default)]
struct Flow {
    delivered: u64,
    dropped: u64,
    suppressed: u64,
}

/// Reads one number of a snapshot, for a family of one sample per key.
type Read<T> = fn(&T) -> u64;

/// Renders every metric of `sup`.
pub fn render(sup: &Supervisor) -> String {
    let mut t = Text::default();
    let statuses = sup.plugins();
    let stats: BTreeMap<String, Counters> = sup
        .metrics()
        .all()
        .into_iter()
        .map(|(name, s)| (name, s.counters()))
        .collect();

    t.family(
        "prx_build_info",
        "gauge",
        "The prx supervisor's version (always 1).",
    );
    t.sample(
        "prx_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    t.family(
        "prx_plugin_state",
        "gauge",
        "1 for the state each plugin is in (starting, running, restarting, backing_off, failed, quarantined, stopped, idle).",
    );
    for s in &statuses {
        t.sample(
            "prx_plugin_state",
            &[("plugin", &s.name), ("state", s.state.as_str())],
            1,
        );
    }

    t.family(
        "prx_plugin_calls_total",
        "counter",
        "Calls into each plugin, by kind of call (tool, event, middleware, cron, chat, storage, rpc).",
    );
    for (plugin, c) in &stats {
        for (kind, n) in &c.by_kind {
            t.sample(
                "prx_plugin_calls_total",
                &[("plugin", plugin), ("call", kind)],
                n,
            );
        }
    }

    t.family(
        "prx_plugin_errors_total",
        "counter",
        "Failed calls by kind of failure (refused is the plugin's own error answer; the rest are limits, traps and worker failures).",
    );
    for (plugin, c) in &stats {
        for (kind, n) in &c.errors {
            t.sample(
                "prx_plugin_errors_total",
                &[("plugin", plugin), ("kind", kind)],
                n,
            );
        }
    }

    let name = "prx_plugin_call_duration_seconds";
    t.family(
        name,
        "histogram",
        "Time from the supervisor sending a call to its answer, including the worker round trip.",
    );
    for (plugin, c) in &stats {
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        for (bound, n) in bounds.zip(&c.buckets) {
            let le = float(bound);
            t.sample(
                &format!("{name}_bucket"),
                &[("plugin", plugin), ("le", &le)],
                n,
            );
        }
        t.sample(
            &format!("{name}_sum"),
            &[("plugin", plugin)],
            float(c.sum_seconds),
        );
        let count = c.buckets.last().copied().unwrap_or(0);
        t.sample(&format!("{name}_count"), &[("plugin", plugin)], count);
    }

    let per_plugin: [(&str, &str, Read<Counters>); 4] = [
        (
            "prx_plugin_fuel_consumed_total",
            "Wasm fuel the plugin's calls consumed, as its workers reported it (clamped to max_fuel per call).",
            |c| c.fuel,
        ),
        (
            "prx_plugin_restarts_total",
            "Worker restarts after a crash, a kill or a failed start.",
            |c| c.restarts,
        ),
        (
            "prx_plugin_quarantines_total",
            "Times the plugin was quarantined for crashing too often.",
            |c| c.quarantines,
        ),
        (
            "prx_plugin_events_published_total",
            "Events the plugin published on the bus.",
            |c| c.events_published,
        ),
    ];
    t.counters("plugin", &stats, &per_plugin);

    t.family(
        "prx_plugin_log_lines_dropped_total",
        "counter",
        "Log lines the plugin wrote past its rate limit.",
    );
    for s in &statuses {
        t.sample(
            "prx_plugin_log_lines_dropped_total",
            &[("plugin", &s.name)],
            s.log_dropped,
        );
    }

    t.family(
        "prx_plugin_worker_resident_bytes",
        "gauge",
        "Resident memory of the plugin's current worker process.",
    );
    for s in &statuses {
        if let Some(rss) = s.pid.and_then(resident_bytes) {
            t.sample(
                "prx_plugin_worker_resident_bytes",
                &[("plugin", &s.name)],
                rss,
            );
        }
    }

    t.family(
        "prx_plugin_kv_bytes",
        "gauge",
        "Bytes (keys and values) the plugin keeps in its KV namespace.",
    );
    for s in &statuses {
        if let Ok(bytes) = sup.kv_usage(&s.name) {
            t.sample("prx_plugin_kv_bytes", &[("plugin", &s.name)], bytes);
        }
    }

    t.family(
        "prx_events_published_total",
        "counter",
        "Events published on the bus, by plugins and by the host.",
    );
    t.sample("prx_events_published_total", &[], sup.events_published());
    t.family(
        "prx_events_too_deep_total",
        "counter",
        "Events not delivered because their causal chain was too long.",
    );
    t.sample("prx_events_too_deep_total", &[], sup.events_too_deep());
    let mut per_subscriber: BTreeMap<String, Flow> = BTreeMap::new();
    for s in sup.event_stats() {
        let flow = per_subscriber.entry(s.owner.to_string()).or_default();
        flow.delivered += s.delivered;
        flow.dropped += s.dropped;
        flow.suppressed += s.suppressed;
    }
    let per_sub: [(&str, &str, Read<Flow>); 3] = [
        (
            "prx_events_delivered_total",
            "Events delivered to each subscriber (a plugin, or host for API streams).",
            |f| f.delivered,
        ),
        (
            "prx_events_dropped_total",
            "Events dropped because the subscriber's queue was full.",
            |f| f.dropped,
        ),
        (
            "prx_events_suppressed_total",
            "Events held back from a subscriber because its own handler caused them.",
            |f| f.suppressed,
        ),
    ];
    t.counters("subscriber", &per_subscriber, &per_sub);

    if let Some(view) = sup.cluster_view() {
        cluster(&mut t, &view);
    }
    process(&mut t);
    t.0
}

/// The cluster's families: which nodes are up, each node's plugins, and
/// the calls and events that crossed between this node and the others.
fn cluster(t: &mut Text, view: &crate::cluster::ClusterView) {
    t.family(
        "prx_cluster_connected",
        "gauge",
        "1 while this node's connection to NATS is up.",
    );
    t.sample(
        "prx_cluster_connected",
        &[("node", &view.node)],
        u8::from(view.connected),
    );
    t.family(
        "prx_cluster_node_up",
        "gauge",
        "1 for each node heard from within three heartbeats, 0 for one gone silent.",
    );
    for node in &view.nodes {
        t.sample(
            "prx_cluster_node_up",
            &[("node", &node.node)],
            u8::from(node.alive),
        );
    }
    t.family(
        "prx_cluster_node_plugins",
        "gauge",
        "Plugins each node runs, by state, as its last heartbeat said.",
    );
    for node in &view.nodes {
        let mut states: BTreeMap<&str, u64> = BTreeMap::new();
        for p in &node.plugins {
            *states.entry(&p.state).or_default() += 1;
        }
        for (state, n) in states {
            t.sample(
                "prx_cluster_node_plugins",
                &[("node", &node.node), ("state", state)],
                n,
            );
        }
    }
    t.family(
        "prx_cluster_calls_total",
        "counter",
        "Calls between this node and another: direction out (made here, served there) or in, by result.",
    );
    for c in &view.calls {
        for (result, n) in [("ok", c.ok), ("error", c.failed)] {
            let labels = [
                ("direction", c.direction.as_str()),
                ("peer", &c.peer),
                ("result", result),
            ];
            t.sample("prx_cluster_calls_total", &labels, n);
        }
    }
    t.family(
        "prx_cluster_events_total",
        "counter",
        "Events sent to the cluster from this node (out), and received here from other nodes (in).",
    );
    t.sample(
        "prx_cluster_events_total",
        &[("direction", "out")],
        view.events_out,
    );
    t.sample(
        "prx_cluster_events_total",
        &[("direction", "in")],
        view.events_in,
    );
    t.family(
        "prx_cluster_events_dropped_total",
        "counter",
        "Events dropped before they reached the link (it fell behind).",
    );
    t.sample("prx_cluster_events_dropped_total", &[], view.events_dropped);
    t.family(
        "prx_cluster_refused_total",
        "counter",
        "Messages from other nodes refused as malformed.",
    );
    t.sample("prx_cluster_refused_total", &[], view.refused);
}

/// Resident bytes of a process, from `/proc/<pid>/statm`.
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |n| n as u64)
}

/// The supervisor's own process, under the names every Prometheus client
/// uses (`process_*`), read from `/proc/self`.
fn process(t: &mut Text) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15, threads 20, start 22,
    // vsize 23, rss 24.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |n| n as f64);
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        t.family(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time the supervisor spent.",
        );
        t.sample(
            "process_cpu_seconds_total",
            &[],
            float((utime + stime) as f64 / ticks),
        );
    }
    if let Some(rss) = field(24) {
        t.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the supervisor.",
        );
        t.sample("process_resident_memory_bytes", &[], rss * page_size());
    }
    if let Some(vsize) = field(23) {
        t.family(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory of the supervisor.",
        );
        t.sample("process_virtual_memory_bytes", &[], vsize);
    }
    if let Some(threads) = field(20) {
        t.family("process_threads", "gauge", "Threads of the supervisor.");
        t.sample("process_threads", &[], threads);
    }
    if let (Some(start), Some(boot)) = (field(22), boot_time()) {
        t.family(
            "process_start_time_seconds",
            "gauge",
            "When the supervisor started, in seconds since the Unix epoch.",
        );
        t.sample(
            "process_start_time_seconds",
            &[],
            float(boot as f64 + start as f64 / ticks),
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        t.family(
            "process_open_fds",
            "gauge",
            "File descriptors the supervisor has open.",
        );
        t.sample("process_open_fds", &[], fds.count());
    }
}

/// The boot time, seconds since the Unix epoch (`btime` in `/proc/stat`).
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut t = Text::default();
        t.sample("m", &[("a", "x\"y\\z\nw")], 1);
        assert_eq!(t.0, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
    }

    #[test]
    fn floats_render_as_prometheus_reads_them() {
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(0.25), "0.25");
        assert_eq!(float(10.0), "10");
    }

    #[test]
    fn the_supervisor_process_is_described() {
        let mut t = Text::default();
        process(&mut t);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
        ] {
            assert!(
                t.0.contains(&format!("\n{name} ")),
                "{name} missing:\n{}",
                t.0
            );
        }
    }
}
