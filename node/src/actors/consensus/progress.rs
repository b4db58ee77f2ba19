//! Where the driver is in the chain of heights, kept apart from IO so the
//! rules are tested alone: which height runs, which one waits for a
//! transaction, and which next height has already been scheduled, so that
//! a committed block always leads to the next height exactly once, whether
//! the commit was ours, came by sync after ours failed, or both.

#[derive(Debug, Default)]
pub struct Progress {
    /// The height being decided (0 before the first start).
    height: u64,
    /// The height that will start when a transaction arrives (or a peer is
    /// seen there, or the empty-block interval passes).
    waiting: Option<u64>,
    /// The highest height whose start has been scheduled after its
    /// predecessor's commit.
    scheduled: u64,
}

impl Progress {
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Whether `height` starts now: only a height above the current one
    /// does. Either way a wait for a height that is no longer ahead ends.
    pub fn start(&mut self, height: u64) -> bool {
        if height <= self.height {
            self.waiting = self.waiting.filter(|w| *w > self.height);
            return false;
        }
        self.height = height;
        self.waiting = None;
        true
    }

    /// Block `height` is in the store. Returns the height to schedule (the
    /// one after it) the first time this is said of `height`; `None` if it
    /// was scheduled already or the chain has moved past it.
    pub fn committed(&mut self, height: u64) -> Option<u64> {
        if height < self.height || self.scheduled > height {
            return None;
        }
        self.scheduled = height + 1;
        Some(height + 1)
    }

    /// Holds `height` back until a transaction arrives; false if it is
    /// not ahead of the current height (nothing to wait for).
    pub fn wait(&mut self, height: u64) -> bool {
        if height <= self.height {
            return false;
        }
        self.waiting = Some(height);
        true
    }

    /// The height held back, if it is still ahead.
    pub fn waiting(&self) -> Option<u64> {
        self.waiting.filter(|w| *w > self.height)
    }

    pub fn take_waiting(&mut self) -> Option<u64> {
        self.waiting.take().filter(|w| *w > self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    fn at(height: u64) -> Progress {
        let mut p = Progress::default();
        assert!(p.start(height));
        p
    }

    #[test]
    fn a_commit_schedules_the_next_height_once_whoever_reports_it() {
        // Our commit's reply and the store's broadcast of the block, in
        // either order: the second schedules nothing.
        let mut p = at(5);
        assert_eq!(p.committed(5), Some(6));
        assert_eq!(p.committed(5), None);
    }

    #[test]
    fn a_failed_commit_then_the_block_by_sync_still_moves_on() {
        let mut p = at(5);
        // Our commit of 5 failed: nothing scheduled. Sync brings block 5.
        assert_eq!(p.committed(5), Some(6));
        assert!(p.start(6));
        assert_eq!(p.height(), 6);
    }

    #[test]
    fn a_wait_for_a_height_sync_has_passed_ends() {
        let mut p = at(5);
        assert_eq!(p.committed(5), Some(6));
        assert!(p.wait(6));
        assert_eq!(p.waiting(), Some(6));
        // Sync brings 6 and 7 and the node starts 8.
        assert!(p.start(8));
        assert_eq!(p.waiting(), None);
        // The interval timer of 6 fires late: no wait is set for it.
        assert!(!p.wait(6));
        assert!(!p.start(6));
        assert_eq!(p.waiting(), None, "a stale wait would turn off re-gossip");
        assert_eq!(p.take_waiting(), None);
        // A commit report for a passed height schedules nothing.
        assert_eq!(p.committed(6), None);
    }
}
