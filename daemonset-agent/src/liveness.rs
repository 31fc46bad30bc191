//! `/healthz` means "the loop is stuck", not "the pass is long". Before each step the loop says
//! how long that step may take at most (an FRR reload: the FRR deadline; a wait: its deadline;
//! idling: nothing); the agent is live while the current step is within that, plus a grace.
//! A thousand-VRF reload of several minutes is progress; a vtysh that hangs past its own
//! deadline, or a loop that stops turning, is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Shared between the loop (which reports progress) and `/healthz` (which reads it).
#[derive(Clone, Debug)]
pub struct Liveness {
    /// Unix seconds after which the loop counts as stuck.
    deadline: Arc<AtomicU64>,
    grace: Duration,
}

impl Liveness {
    pub fn new(grace: Duration) -> Self {
        let l = Self {
            deadline: Arc::new(AtomicU64::new(0)),
            grace,
        };
        l.progress(Duration::ZERO);
        l
    }

    /// The loop is turning, and its next report comes within `step` (plus the grace).
    pub fn progress(&self, step: Duration) {
        self.deadline
            .store(now_secs() + (step + self.grace).as_secs(), Ordering::Relaxed);
    }

    /// Seconds past the deadline, when the loop is stuck.
    pub fn overdue(&self) -> Option<u64> {
        let late = now_secs().saturating_sub(self.deadline.load(Ordering::Relaxed));
        (late > 0).then_some(late)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_extends_the_deadline_and_a_stopped_loop_runs_out() {
        let l = Liveness::new(Duration::ZERO);
        l.progress(Duration::from_secs(600));
        assert_eq!(l.overdue(), None, "within a long step");
        // a loop that stopped reporting an hour ago
        l.deadline.store(now_secs() - 3600, Ordering::Relaxed);
        assert!(l.overdue().is_some_and(|s| s >= 3600));
    }
}
