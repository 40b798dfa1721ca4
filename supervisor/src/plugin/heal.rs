//! A quarantine that lifts itself. A plugin taken out for crashing too
//! often is started again after a cool-down; each quarantine after a
//! release waits twice as long as the one before (up to a cap), and a
//! plugin that then serves for a healthy period starts from the first
//! cool-down again. A quarantine for a security event (a protocol
//! violation, a forbidden system call) waits for an operator: the plugin's
//! own code did it, and a timer would hand it a new try at a fixed pace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::config::RestartPolicy;

use super::{Plugin, PluginState, Runtime};

/// Why a plugin is quarantined, as far as lifting it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Quarantine {
    /// Its worker broke the protocol or made a forbidden system call: it
    /// stays out until an operator releases it.
    Security(String),
    /// It crashed too often: it is tried again after a cool-down.
    Crashes(String),
}

impl Quarantine {
    pub(super) fn reason(&self) -> &str {
        match self {
            Self::Security(why) | Self::Crashes(why) => why,
        }
    }
}

/// Who lifted a quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lifter {
    Operator,
    /// The cool-down of the quarantine of this generation.
    CoolDown(u64),
}

impl Lifter {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::CoolDown(_) => "cool-down",
        }
    }

    /// Whether it may lift the quarantine of `healing` now: a cool-down
    /// only the quarantine it was set for.
    pub(super) fn may_lift(self, healing: &Healing) -> bool {
        match self {
            Self::Operator => true,
            Self::CoolDown(generation) => healing.is_current(generation),
        }
    }
}

/// The quarantines of one plugin version: how many came in a row, and
/// which one a pending automatic release belongs to.
#[derive(Debug, Default)]
pub(super) struct Healing {
    streak: Mutex<Streak>,
}

#[derive(Debug, Default)]
struct Streak {
    /// Quarantines since the streak last started afresh.
    count: u32,
    /// When the last quarantine was lifted.
    released_at: Option<Instant>,
    /// Counts quarantines: an automatic release only lifts the one it was
    /// set for.
    generation: u64,
}

impl Healing {
    /// A quarantine at `now`: the cool-down before it lifts itself (none
    /// for a security event, or when the policy leaves every release to an
    /// operator), and the generation that release belongs to.
    fn quarantined(
        &self,
        policy: &RestartPolicy,
        now: Instant,
        why: &Quarantine,
    ) -> (Option<Duration>, u64) {
        let mut streak = self.streak.lock().unwrap_or_else(|p| p.into_inner());
        // Any quarantine voids a release pending for an earlier one.
        streak.generation += 1;
        if matches!(why, Quarantine::Security(_)) {
            return (None, streak.generation);
        }
        if streak
            .released_at
            .is_some_and(|at| now.duration_since(at) >= policy.quarantine_reset)
        {
            streak.count = 0;
        }
        let cooldown = cooldown(policy, streak.count);
        streak.count = streak.count.saturating_add(1);
        (cooldown, streak.generation)
    }

    /// The quarantine was lifted at `now` (by either lifter).
    fn released(&self, now: Instant) {
        self.streak
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .released_at = Some(now);
    }

    fn is_current(&self, generation: u64) -> bool {
        self.streak
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .generation
            == generation
    }
}

/// The cool-down of quarantine number `streak` (0 = the first of a
/// streak): `quarantine_cooldown`, doubling up to the cap; `None` when the
/// policy's cool-down is zero.
fn cooldown(policy: &RestartPolicy, streak: u32) -> Option<Duration> {
    if policy.quarantine_cooldown.is_zero() {
        return None;
    }
    let doubled = policy
        .quarantine_cooldown
        .saturating_mul(1 << streak.min(20));
    Some(doubled.min(policy.quarantine_cooldown_max))
}

impl Plugin {
    /// Takes the plugin out: its workers are killed and calls refused with
    /// `why`. One quarantined for crashes is released again after its
    /// cool-down. Returns the message the state carries.
    pub(super) fn quarantine(self: &Arc<Self>, rt: &Runtime, why: Quarantine) -> String {
        // Already out (a spare and the first worker can both get here): a
        // crash loop neither replaces a quarantine nor starts its timer
        // again; a security event replaces one for crashes, and voids its
        // timer.
        if let (Quarantine::Crashes(_), PluginState::Quarantined { reason, .. }) =
            (&why, self.state())
        {
            return reason;
        }
        let (cooldown, generation) = self.healing.quarantined(&rt.restart, Instant::now(), &why);
        let then = match cooldown {
            Some(after) => format!(
                "it is tried again in {} s, or release it now",
                after.as_secs_f64().ceil() as u64
            ),
            None => "release it".into(),
        };
        let message = format!(
            "plugin `{}` quarantined: {}; {then} with `prx release {}`",
            self.name,
            why.reason(),
            self.name
        );
        self.set_state(PluginState::Quarantined {
            reason: message.clone(),
            release_at: cooldown.map(|after| SystemTime::now() + after),
        });
        // Every worker goes, the first one too when a spare brought this
        // about; their supervision lets them go.
        if let Some(worker) = self.worker.send_replace(None) {
            worker.stop_on_purpose();
            worker.kill();
        }
        self.kill_spares();
        self.stats().count_quarantine();
        tracing::error!(plugin = %self.name, event = "prx.lifecycle.quarantined",
            release_in_s = cooldown.map(|d| d.as_secs()), "{message}");
        self.announce(
            "prx.lifecycle.quarantined",
            serde_json::json!({
                "reason": message,
                "release_in_ms": cooldown.map(|d| d.as_millis() as u64),
            }),
        );
        if let Some(after) = cooldown {
            self.release_later(rt, after, generation);
        }
        message
    }

    /// Lifts quarantine `generation` after `after`, unless the plugin is
    /// stopped or replaced, or that quarantine was lifted meanwhile.
    fn release_later(self: &Arc<Self>, rt: &Runtime, after: Duration, generation: u64) {
        let plugin = self.clone();
        let rt = rt.clone();
        tokio::spawn(async move {
            let at = tokio::time::Instant::now() + after;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => break,
                    _ = plugin.wake.notified() => {}
                }
                if plugin.is_stopping() {
                    return;
                }
            }
            if plugin.is_stopping() {
                return;
            }
            // Lifted by an operator, or quarantined again, meanwhile:
            // nothing to do.
            let _ = plugin.lift(&rt, Lifter::CoolDown(generation)).await;
        });
    }

    /// Records that the quarantine was lifted now.
    pub(super) fn note_released(&self) {
        self.healing.released(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crashes() -> Quarantine {
        Quarantine::Crashes("6 crashes within 60 s".into())
    }

    fn policy() -> RestartPolicy {
        RestartPolicy {
            quarantine_cooldown: Duration::from_secs(60),
            quarantine_cooldown_max: Duration::from_secs(300),
            quarantine_reset: Duration::from_secs(600),
            ..RestartPolicy::default()
        }
    }

    #[test]
    fn each_quarantine_in_a_streak_waits_twice_as_long_up_to_the_cap() {
        let healing = Healing::default();
        let t0 = Instant::now();
        let waits: Vec<u64> = (0..5)
            .map(|i| {
                let now = t0 + Duration::from_secs(i * 100);
                let (cooldown, _) = healing.quarantined(&policy(), now, &crashes());
                // Released after its cool-down, then crashed again soon.
                healing.released(now + cooldown.unwrap());
                cooldown.unwrap().as_secs()
            })
            .collect();
        assert_eq!(waits, [60, 120, 240, 300, 300]);
    }

    #[test]
    fn a_healthy_period_after_a_release_starts_the_streak_afresh() {
        let healing = Healing::default();
        let t0 = Instant::now();
        healing.quarantined(&policy(), t0, &crashes());
        healing.released(t0 + Duration::from_secs(60));
        // Quarantined again 9 minutes after the release: still a streak.
        let (second, _) = healing.quarantined(&policy(), t0 + Duration::from_secs(600), &crashes());
        assert_eq!(second, Some(Duration::from_secs(120)));
        healing.released(t0 + Duration::from_secs(720));
        // Ten minutes of serving: forgiven.
        let (third, _) = healing.quarantined(&policy(), t0 + Duration::from_secs(1320), &crashes());
        assert_eq!(third, Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_zero_cooldown_leaves_every_release_to_an_operator() {
        let healing = Healing::default();
        let never = RestartPolicy {
            quarantine_cooldown: Duration::ZERO,
            ..policy()
        };
        assert_eq!(
            healing.quarantined(&never, Instant::now(), &crashes()).0,
            None
        );
    }

    #[test]
    fn a_security_event_is_never_released_by_a_timer() {
        let healing = Healing::default();
        let violation = Quarantine::Security("protocol violation: forged id".into());
        assert_eq!(
            healing.quarantined(&policy(), Instant::now(), &violation).0,
            None
        );
    }

    #[test]
    fn a_release_belongs_to_the_quarantine_it_was_set_for() {
        let healing = Healing::default();
        let now = Instant::now();
        let (_, first) = healing.quarantined(&policy(), now, &crashes());
        assert!(healing.is_current(first));
        // Released by an operator, then quarantined for a security event:
        // the timer set for the first quarantine must not lift this one.
        healing.released(now);
        let violation = Quarantine::Security("killed by seccomp".into());
        let (_, second) = healing.quarantined(&policy(), now, &violation);
        assert!(!healing.is_current(first));
        assert!(healing.is_current(second));
    }
}
