//! Turns at a backend's rate limit, one reconcile at a time.
//!
//! At most `slots` reconciles make changing calls at once. A reconcile that
//! gets a turn keeps it for every changing call of that pass, so a cache
//! that has started creating its resources finishes them without queueing
//! again. Any other reconcile that wants to change something is told its
//! place in line and returns at once: it releases its worker to the caches
//! that need no change (a group that became available, a first status).
//! When a turn ends, the first cache in line is woken on the [`Wakeups`]
//! and its slot is kept for it for [`RESERVED_FOR`]. Places are kept in
//! first-come order, so caches advance one after another instead of all in
//! lockstep, and a cache that is deleted while it waits loses its place
//! once its reserved slot lapses.
//!
//! A pass is one backend step of one cache's reconcile: the reconciler runs
//! each converge and each delete as one ([`pass`]). Calls made outside a
//! pass (the fleet poller, the class check, a credential rotation) are never
//! held back; they only wait for their token bucket. A backend without a
//! line ignores the pass.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::wakeups::Wakeups;

/// How long a slot is kept for the cache woken to take it.
pub const RESERVED_FOR: Duration = Duration::from_secs(5);

/// A wait estimate before any turn has ended: calls per turn, seconds per turn.
const FIRST_GUESS: (f64, f64) = (4.0, 2.0);

tokio::task_local! {
    static PASS: Arc<Pass>;
}

/// One reconcile pass of one cache, and the turn it holds, if any.
struct Pass {
    id: String,
    turn: Mutex<Option<Turn>>,
}

/// Runs `work` as one pass of the cache whose backend identity is `id`: a
/// turn taken during `work` is held until `work` ends (or is dropped).
pub async fn pass<F: Future>(id: &str, work: F) -> F::Output {
    let pass = Arc::new(Pass {
        id: id.to_string(),
        turn: Mutex::new(None),
    });
    PASS.scope(pass, work).await
}

/// Where a cache that must wait stands in line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Place {
    /// Caches ahead of it: holding a turn, woken for one, or waiting.
    pub ahead: usize,
    /// About how many changing calls those caches will make first.
    pub calls: u32,
    /// About how long until its turn.
    pub wait: Duration,
    /// When to come back if no wake-up came first: later than `wait`, so
    /// the wake-up normally does it.
    pub retry_after: Duration,
}

/// The line for one rate limiter. Cheap to clone; clones share the line.
#[derive(Clone, Debug)]
pub struct Turns {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    slots: usize,
    state: Mutex<State>,
    wakeups: OnceLock<Wakeups>,
}

#[derive(Debug)]
struct State {
    holding: HashSet<String>,
    /// Woken for a free slot, which is kept for them until the deadline.
    reserved: HashMap<String, Instant>,
    waiting: VecDeque<String>,
    /// Moving averages over the turns that ended.
    calls_per_turn: f64,
    secs_per_turn: f64,
}

/// A held turn; ending it (dropping it) frees the slot for the next in line.
#[derive(Debug)]
struct Turn {
    shared: Arc<Shared>,
    id: String,
    since: Instant,
    calls: u32,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.shared
            .finish(&self.id, self.calls, self.since.elapsed());
    }
}

impl Turns {
    /// A line with `slots` turns at once (at least one).
    pub fn new(slots: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                slots: slots.max(1),
                state: Mutex::new(State {
                    holding: HashSet::new(),
                    reserved: HashMap::new(),
                    waiting: VecDeque::new(),
                    calls_per_turn: FIRST_GUESS.0,
                    secs_per_turn: FIRST_GUESS.1,
                }),
                wakeups: OnceLock::new(),
            }),
        }
    }

    /// Wakes the next in line on `wakeups` (by backend identity) when a slot frees.
    pub fn announce_on(&self, wakeups: Wakeups) {
        let _ = self.shared.wakeups.set(wakeups);
    }

    /// Before a changing call: `Ok` when the current pass holds a turn or
    /// now takes one (or the call is not part of a pass); otherwise the
    /// pass's place in line, which it keeps until its turn.
    pub fn enter(&self) -> Result<(), Place> {
        let Ok(pass) = PASS.try_with(Arc::clone) else {
            return Ok(());
        };
        let mut turn = pass.turn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = turn.as_mut() {
            t.calls += 1;
            return Ok(());
        }
        self.shared.admit(&pass.id)?;
        *turn = Some(Turn {
            shared: self.shared.clone(),
            id: pass.id.clone(),
            since: Instant::now(),
            calls: 1,
        });
        Ok(())
    }

    /// Caches holding a turn, woken for one, and waiting.
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = self.shared.lock();
        (s.holding.len(), s.reserved.len(), s.waiting.len())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn free(&self, s: &State) -> bool {
        s.holding.len() + s.reserved.len() < self.slots
    }

    fn admit(self: &Arc<Self>, id: &str) -> Result<(), Place> {
        let mut s = self.lock();
        let woken = self.fill(&mut s, Some(id));
        let admitted = s.reserved.remove(id).is_some() || self.free(&s);
        if admitted {
            s.holding.insert(id.to_string());
        }
        let place = if admitted {
            Ok(())
        } else {
            let at = match s.waiting.iter().position(|w| w == id) {
                Some(at) => at,
                None => {
                    s.waiting.push_back(id.to_string());
                    s.waiting.len() - 1
                }
            };
            let ahead = s.holding.len() + s.reserved.len() + at;
            // Each slot ends a turn about every `secs_per_turn`.
            let wait =
                Duration::from_secs_f64((at + 1) as f64 * s.secs_per_turn / self.slots as f64);
            Err(Place {
                ahead,
                calls: (ahead as f64 * s.calls_per_turn).round() as u32,
                wait,
                retry_after: wait.mul_f64(1.25) + RESERVED_FOR,
            })
        };
        drop(s);
        self.wake(woken);
        place
    }

    fn finish(self: &Arc<Self>, id: &str, calls: u32, took: Duration) {
        let mut s = self.lock();
        if s.holding.remove(id) {
            const WEIGHT: f64 = 0.1;
            s.calls_per_turn += WEIGHT * (f64::from(calls) - s.calls_per_turn);
            s.secs_per_turn += WEIGHT * (took.as_secs_f64() - s.secs_per_turn);
        }
        let woken = self.fill(&mut s, None);
        drop(s);
        self.wake(woken);
    }

    /// Drops lapsed reservations and keeps each free slot for the first in
    /// line: the ids to wake (not `asking`, which is here already).
    fn fill(&self, s: &mut State, asking: Option<&str>) -> Vec<String> {
        let now = Instant::now();
        s.reserved.retain(|_, deadline| *deadline > now);
        let mut woken = Vec::new();
        while self.free(s) {
            let Some(next) = s.waiting.pop_front() else {
                break;
            };
            s.reserved.insert(next.clone(), now + RESERVED_FOR);
            if Some(next.as_str()) != asking {
                woken.push(next);
            }
        }
        woken
    }

    fn wake(self: &Arc<Self>, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        if let Some(w) = self.wakeups.get() {
            for id in &ids {
                w.wake(id);
            }
        }
        // A woken cache that never comes (deleted meanwhile) loses its slot
        // when the reservation lapses; look again then.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let shared = Arc::clone(self);
            rt.spawn(async move {
                tokio::time::sleep(RESERVED_FOR + Duration::from_millis(10)).await;
                let woken = shared.fill(&mut shared.lock(), None);
                shared.wake(woken);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of `slots` that wakes on a channel the test hears.
    fn announced(slots: usize) -> (Turns, tokio::sync::broadcast::Receiver<String>) {
        let wakeups = Wakeups::default();
        let heard = wakeups.subscribe();
        let turns = Turns::new(slots);
        turns.announce_on(wakeups);
        (turns, heard)
    }

    /// A pass of `id` that takes a free turn and holds it until released.
    struct Holder {
        release: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn hold(turns: &Turns, id: &'static str) -> Holder {
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let turns = turns.clone();
            pass(id, async move {
                turns.enter().expect("a free turn");
                let _ = held.await;
            })
        });
        tokio::task::yield_now().await;
        Holder { release, task }
    }

    impl Holder {
        /// Ends the pass, and with it the turn.
        async fn release(self) {
            self.release.send(()).expect("the holder waits");
            self.task.await.expect("the holder's pass");
        }
    }

    /// One pass of `id` that tries a changing call and ends.
    async fn try_turn(turns: &Turns, id: &str) -> Result<(), Place> {
        pass(id, async { turns.enter() }).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_covers_every_call_of_its_pass() {
        let turns = Turns::new(1);
        pass("a", async {
            for _ in 0..6 {
                turns.enter().expect("the pass keeps its turn");
            }
            assert_eq!(turns.counts(), (1, 0, 0));
            // Another cache asks meanwhile and is told to wait.
            let other = tokio::spawn({
                let turns = turns.clone();
                async move { try_turn(&turns, "b").await }
            })
            .await
            .expect("task");
            assert_eq!(other.expect_err("one slot").ahead, 1);
        })
        .await;
        assert_eq!(turns.counts(), (0, 1, 0), "b is woken for the free slot");
        assert!(try_turn(&turns, "b").await.is_ok());
        assert_eq!(turns.counts(), (0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_line_is_first_come_and_the_next_is_woken() {
        let (turns, mut heard) = announced(1);
        let holder = hold(&turns, "holder").await;
        let places: Vec<Place> =
            futures::future::join_all(["c1", "c2", "c3"].map(|id| try_turn(&turns, id)))
                .await
                .into_iter()
                .map(|r| r.expect_err("in line"))
                .collect();
        assert_eq!(
            places.iter().map(|p| p.ahead).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(places[0].wait < places[2].wait && places[0].retry_after > places[0].wait);
        // Asking again keeps the place instead of going to the back.
        assert_eq!(try_turn(&turns, "c2").await.expect_err("still").ahead, 2);
        // A newcomer goes behind them even though it asks last.
        assert_eq!(try_turn(&turns, "late").await.expect_err("behind").ahead, 4);

        holder.release().await;
        assert_eq!(heard.recv().await.expect("wake-up"), "c1");
        // c2 cannot jump the line while c1's slot is kept for it.
        assert_eq!(try_turn(&turns, "c2").await.expect_err("kept").ahead, 1);
        assert!(try_turn(&turns, "c1").await.is_ok());
        assert_eq!(heard.recv().await.expect("wake-up"), "c2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_that_never_comes_loses_its_slot() {
        let (turns, mut heard) = announced(1);
        let holder = hold(&turns, "holder").await;
        assert!(try_turn(&turns, "deleted").await.is_err());
        assert!(try_turn(&turns, "next").await.is_err());
        holder.release().await;
        assert_eq!(heard.recv().await.expect("wake-up"), "deleted");
        // "deleted" never asks; after RESERVED_FOR the slot goes on.
        tokio::time::sleep(RESERVED_FOR + Duration::from_millis(20)).await;
        assert_eq!(heard.recv().await.expect("wake-up"), "next");
        assert!(try_turn(&turns, "next").await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn calls_outside_a_pass_are_not_held_back() {
        let turns = Turns::new(1);
        let holder = hold(&turns, "holder").await;
        assert!(turns.enter().is_ok(), "the fleet poller's calls");
        holder.release().await;
    }

    #[tokio::test(start_paused = true)]
    async fn waits_are_estimated_from_the_turns_that_ended() {
        let turns = Turns::new(2);
        for id in ["a", "b", "c", "d"] {
            pass(id, async {
                for _ in 0..6 {
                    turns.enter().expect("free");
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            })
            .await;
        }
        let holders = [hold(&turns, "x").await, hold(&turns, "y").await];
        let place = try_turn(&turns, "z").await.expect_err("both slots held");
        // The averages moved from the first guess (4 calls, 2 s) towards 6 and 3.
        assert!(place.calls > 2 * 4 && place.calls < 2 * 6, "{place:?}");
        let secs = place.wait.as_secs_f64();
        assert!(secs > 2.0 / 2.0 && secs < 3.0 / 2.0, "{place:?}");
        for h in holders {
            h.release().await;
        }
    }
}
