//! Consensus work before admission. On a node at capacity, signature
//! recovery for gossiped and submitted transactions can keep every core
//! busy; consensus (votes, proposals, building, verifying and committing
//! blocks) then waits for a turn and every height takes longer. Consensus
//! work marks itself busy here, and admission work steps aside between
//! transactions while it is: it waits until consensus is done, or for at most
//! [`MAX_PAUSE`]; then the thread works on for as long as it waited before
//! it steps aside again, so admission keeps at least half its time even
//! while consensus is busy for long (a node catching up by sync).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest admission waits at one step while consensus is busy.
pub const MAX_PAUSE: Duration = Duration::from_millis(5);

#[derive(Debug, Default)]
pub struct Priority {
    busy: AtomicUsize,
    lock: Mutex<()>,
    idle: Condvar,
}

/// Consensus work in progress, until dropped.
#[derive(Debug)]
pub struct Busy(Arc<Priority>);

impl Priority {
    /// Marks consensus work in progress.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// Called by admission work between transactions: while consensus is
    /// busy, waits for it to finish (at most [`MAX_PAUSE`], and not again on
    /// this thread for as long as it waited).
    pub fn step_aside(&self) -> bool {
        thread_local! {
            static EXEMPT_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
        }
        if !self.is_busy() {
            return false;
        }
        let now = Instant::now();
        if EXEMPT_UNTIL.get().is_some_and(|until| now < until) {
            return false;
        }
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        drop(
            self.idle
                .wait_timeout_while(guard, MAX_PAUSE, |_| self.is_busy())
                .unwrap_or_else(|e| e.into_inner()),
        );
        // As long at work as it waited: half the time at least.
        let after = Instant::now();
        EXEMPT_UNTIL.set(Some(after + after.duration_since(now)));
        true
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.0.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn admission_waits_while_consensus_is_busy_but_never_for_long() {
        let priority = Arc::new(Priority::default());
        assert!(!priority.step_aside(), "nothing busy: no wait");

        let busy = priority.busy();
        let started = Instant::now();
        assert!(priority.step_aside(), "busy: waits its turn");
        assert!(started.elapsed() >= MAX_PAUSE, "for the pause at most");
        // Then it works on: of a few steps right after, not all wait (one
        // could, if this thread were descheduled for a whole pause).
        let waits = (0..3).filter(|_| priority.step_aside()).count();
        assert!(waits < 3, "starved: every step waited");

        let waiter = {
            let priority = priority.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                priority.step_aside();
                started.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(1));
        drop(busy);
        assert!(!priority.is_busy());
        // Woken by the end of the busy period, or by its own timeout.
        assert!(waiter.join().expect("waiter") < Duration::from_secs(1));
    }
}
