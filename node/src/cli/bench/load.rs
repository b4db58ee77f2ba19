//! The bench's submitters: closed-loop flow control over pre-signed
//! transfers.
//!
//! Each sender has its transfers in nonce order and a window: at most
//! `window` of its transfers may be sent and not yet committed. A transfer
//! refused for now (mempool full, busy, behind a nonce gap while an earlier
//! one is on its way) goes back to the front of its sender's line and the
//! sender waits a backoff, so the sender never leaves a gap behind. With a
//! rate, new transfers are released no faster than it (open loop, still
//! inside the windows); retries do not count against it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tally_ledger::Hash;

/// Pause before a sender sends a refused-for-now transfer again.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// Attempts of one transfer before the bench gives it up.
pub const MAX_ATTEMPTS: u32 = 400;

/// A pre-signed transfer.
#[derive(Clone, Debug)]
pub struct Planned {
    pub hash: Hash,
    pub bytes: Vec<u8>,
    pub attempts: u32,
}

#[derive(Debug, Default)]
struct Sender {
    line: VecDeque<Planned>,
    /// Sent (in flight or accepted) and not yet committed.
    outstanding: usize,
    not_before: Option<Instant>,
}

/// Where an accepted transfer went and when.
#[derive(Clone, Copy, Debug)]
pub struct Accepted {
    pub sender: usize,
    pub endpoint: usize,
    pub sent: Instant,
}

#[derive(Debug)]
struct State {
    senders: Vec<Sender>,
    cursor: usize,
    window: usize,
    /// Transfers accepted and not yet seen committed.
    accepted: HashMap<Hash, Accepted>,
    /// Transfers sent and not answered yet, and those of them already seen
    /// in a block (the block can arrive before the answer).
    in_flight: HashSet<Hash>,
    committed_early: HashSet<Hash>,
    /// Planned transfers given up with their sender's line (after a
    /// transfer of it was refused for good: the rest could never execute).
    abandoned: usize,
    /// New transfers may be released (the run is on).
    open: bool,
    /// Open loop: new transfers per second, counted from `rate_start`.
    rate: Option<(f64, Instant)>,
    released: u64,
}

/// The shared state of the submitters and the block follower.
#[derive(Debug)]
pub struct Scheduler {
    state: Mutex<State>,
}

impl Scheduler {
    pub fn new(lines: Vec<Vec<Planned>>, window: usize) -> Scheduler {
        Scheduler {
            state: Mutex::new(State {
                senders: lines
                    .into_iter()
                    .map(|line| Sender {
                        line: line.into(),
                        ..Sender::default()
                    })
                    .collect(),
                cursor: 0,
                window: window.max(1),
                accepted: HashMap::new(),
                in_flight: HashSet::new(),
                committed_early: HashSet::new(),
                abandoned: 0,
                open: true,
                rate: None,
                released: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases new transfers at `per_s` from now on (None: as fast as the
    /// windows allow), with each sender's window set to `window`.
    pub fn set_pace(&self, per_s: Option<f64>, window: usize) {
        let mut state = self.state();
        state.rate = per_s.map(|r| (r, Instant::now()));
        state.released = 0;
        state.window = window.max(1);
    }

    /// No new transfers from now on; retries of refused-for-now ones go on,
    /// so no sender is left with a gap.
    pub fn close(&self) {
        self.state().open = false;
    }

    /// Up to `max` transfers whose senders have room in their windows, each
    /// sender's in nonce order, taken round-robin over the senders.
    pub fn take(&self, max: usize, now: Instant) -> Vec<(usize, Planned)> {
        let mut state = self.state();
        let mut fresh_allowed = if !state.open {
            0
        } else if let Some((rate, since)) = state.rate {
            let due = (rate * now.duration_since(since).as_secs_f64()) as u64;
            due.saturating_sub(state.released) as usize
        } else {
            usize::MAX
        };
        let n = state.senders.len();
        let window = state.window;
        let start = state.cursor;
        let mut out = Vec::new();
        for k in 0..n {
            if out.len() >= max {
                break;
            }
            let i = (start + k) % n;
            let sender = &mut state.senders[i];
            if sender.not_before.is_some_and(|t| t > now) {
                continue;
            }
            sender.not_before = None;
            while out.len() < max && sender.outstanding < window {
                let Some(front) = sender.line.front() else {
                    break;
                };
                if front.attempts == 0 {
                    if fresh_allowed == 0 {
                        break;
                    }
                    fresh_allowed -= 1;
                }
                let planned = sender.line.pop_front().expect("front exists");
                sender.outstanding += 1;
                out.push((i, planned));
            }
        }
        state.cursor = (start + 1) % n.max(1);
        state.released += out.iter().filter(|(_, p)| p.attempts == 0).count() as u64;
        state.in_flight.extend(out.iter().map(|(_, p)| p.hash));
        out
    }

    /// Transfers refused for now: back to the front of their senders' lines
    /// (in order), each sender pausing a backoff. One tried too often is
    /// given up with the rest of its sender's line (they could never
    /// execute behind it). Returns how many were given up.
    pub fn refused_for_now(&self, items: Vec<(usize, Planned)>, now: Instant) -> usize {
        let mut state = self.state();
        let mut given_up = 0;
        for (i, mut planned) in items.into_iter().rev() {
            state.in_flight.remove(&planned.hash);
            let sender = &mut state.senders[i];
            sender.outstanding -= 1;
            planned.attempts += 1;
            if planned.attempts > MAX_ATTEMPTS {
                given_up += 1 + sender.line.len();
                sender.line.clear();
                continue;
            }
            sender.not_before = Some(now + RETRY_BACKOFF);
            sender.line.push_front(planned);
        }
        state.abandoned += given_up;
        given_up
    }

    /// A transfer refused for good: its sender's later transfers could
    /// never execute, so they are given up too. Returns how many.
    pub fn failed(&self, sender: usize, hash: &Hash) -> usize {
        let mut state = self.state();
        state.in_flight.remove(hash);
        let line = &mut state.senders[sender];
        line.outstanding -= 1;
        let rest = line.line.len();
        line.line.clear();
        state.abandoned += rest;
        rest
    }

    /// A transfer the node accepted. False if it was already seen in a
    /// block (its slot is then free at once).
    pub fn accepted(&self, hash: Hash, accepted: Accepted) -> bool {
        let mut state = self.state();
        state.in_flight.remove(&hash);
        if state.committed_early.remove(&hash) {
            state.senders[accepted.sender].outstanding -= 1;
            return false;
        }
        state.accepted.insert(hash, accepted);
        true
    }

    /// A transfer seen in a block: frees its window slot; its acceptance
    /// if the bench had it as accepted.
    pub fn committed(&self, hash: &Hash) -> Option<Accepted> {
        let mut state = self.state();
        let Some(accepted) = state.accepted.remove(hash) else {
            if state.in_flight.contains(hash) {
                state.committed_early.insert(*hash);
            }
            return None;
        };
        state.senders[accepted.sender].outstanding -= 1;
        Some(accepted)
    }

    /// A transfer the node reports dropped: frees its window slot.
    pub fn dropped(&self, hash: &Hash) {
        self.committed(hash);
    }

    /// Transfers accepted and not seen committed, oldest first; with
    /// `older_than`, only those sent before it, at most `max`.
    pub fn pending(&self, older_than: Option<Instant>, max: usize) -> Vec<(Hash, Accepted)> {
        let mut out: Vec<(Hash, Accepted)> = self
            .state()
            .accepted
            .iter()
            .filter(|(_, a)| older_than.is_none_or(|t| a.sent < t))
            .map(|(h, a)| (*h, *a))
            .collect();
        out.sort_by_key(|(_, a)| a.sent);
        out.truncate(max);
        out
    }

    pub fn abandoned(&self) -> usize {
        self.state().abandoned
    }

    pub fn pending_len(&self) -> usize {
        self.state().accepted.len()
    }

    /// Nothing left to send: closed with no retry waiting, or every line empty.
    pub fn exhausted(&self) -> bool {
        let state = self.state();
        state.senders.iter().all(|s| match s.line.front() {
            None => true,
            Some(front) => !state.open && front.attempts == 0,
        })
    }

    /// Transfers planned and never sent.
    pub fn unsent(&self) -> usize {
        self.state()
            .senders
            .iter()
            .map(|s| s.line.iter().filter(|p| p.attempts == 0).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(n: u8) -> Planned {
        Planned {
            hash: Hash([n; 32]),
            bytes: vec![n],
            attempts: 0,
        }
    }

    #[test]
    fn windows_bound_what_each_sender_has_out() {
        let s = Scheduler::new(vec![(0..5).map(planned).collect(), vec![planned(9)]], 2);
        let now = Instant::now();
        let first = s.take(10, now);
        let hashes: Vec<u8> = first.iter().map(|(_, p)| p.hash.0[0]).collect();
        assert_eq!(hashes, [0, 1, 9], "two from the first sender, its window");
        assert!(s.take(10, now).is_empty(), "windows full");
        for (i, p) in &first {
            s.accepted(
                p.hash,
                Accepted {
                    sender: *i,
                    endpoint: 0,
                    sent: now,
                },
            );
        }
        s.committed(&Hash([0; 32]));
        let next = s.take(10, now);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].1.hash, Hash([2; 32]), "in nonce order");
    }

    #[test]
    fn a_refused_transfer_goes_first_again_after_a_backoff() {
        let s = Scheduler::new(vec![(0..4).map(planned).collect()], 4);
        let now = Instant::now();
        let taken = s.take(2, now);
        assert_eq!(s.refused_for_now(taken, now), 0);
        assert!(s.take(4, now).is_empty(), "backing off");
        let again = s.take(4, now + RETRY_BACKOFF);
        let hashes: Vec<u8> = again.iter().map(|(_, p)| p.hash.0[0]).collect();
        assert_eq!(hashes, [0, 1, 2, 3], "no gap: the refused ones first");
        // Closed: only the retries still go.
        let s = Scheduler::new(vec![(0..4).map(planned).collect()], 4);
        let taken = s.take(1, now);
        s.refused_for_now(taken, now);
        s.close();
        let later = now + RETRY_BACKOFF;
        let last = s.take(4, later);
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].1.hash, Hash([0; 32]));
        assert!(s.exhausted());
    }

    #[test]
    fn a_block_seen_before_the_answer_frees_the_slot() {
        let s = Scheduler::new(vec![(0..2).map(planned).collect()], 1);
        let now = Instant::now();
        let taken = s.take(1, now);
        assert!(s.committed(&taken[0].1.hash).is_none(), "not answered yet");
        let at = Accepted {
            sender: 0,
            endpoint: 0,
            sent: now,
        };
        assert!(!s.accepted(taken[0].1.hash, at), "already committed");
        assert_eq!(s.pending_len(), 0);
        assert_eq!(s.take(1, now).len(), 1, "the window slot is free");
    }

    #[test]
    fn a_transfer_refused_for_good_gives_up_its_senders_line() {
        let s = Scheduler::new(vec![(0..5).map(planned).collect()], 1);
        let now = Instant::now();
        let taken = s.take(1, now);
        assert_eq!(s.failed(0, &taken[0].1.hash), 4);
        assert!(s.take(5, now).is_empty());
        assert!(s.exhausted());
        assert_eq!(s.abandoned(), 4);
    }

    #[test]
    fn a_rate_releases_new_transfers_no_faster() {
        let s = Scheduler::new(vec![(0..100).map(planned).collect()], 100);
        let start = Instant::now();
        s.set_pace(Some(10.0), 100);
        assert!(s.take(100, start).len() <= 1);
        let later = s.take(100, start + Duration::from_secs(2));
        assert!((19..=21).contains(&later.len()), "{}", later.len());
    }
}
