//! The WebSocket heartbeat's clock: one per worker thread (and ping interval), not a timer
//! per socket.
//!
//! A socket's own `tokio::time::Interval` is a boxed timer: with its handle, about 150 bytes
//! of every idle socket (issue 19). Here a socket holds a [`Beat`]: a place in one of the
//! clock's [`PHASES`] phases. The clock ticks every interval / `PHASES` and wakes the
//! sockets of one phase, so each socket hears its phase once per interval, and a crowd that
//! joined together is still spread over the interval, not pinged all in one tick. A socket
//! joins the phase that comes round again one interval after it joined, so its first ping
//! comes about an interval after it opened.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How many phases an interval is cut into.
const PHASES: usize = 16;

/// One worker thread's clock for one ping interval.
struct Clock {
    period: Duration,
    state: RefCell<Phases>,
}

struct Phases {
    /// The phase that ticked last.
    current: usize,
    phases: [Phase; PHASES],
}

#[derive(Default)]
struct Phase {
    /// How many times this phase has ticked.
    ticks: u64,
    /// The sockets in this phase: the waker of each that is waiting (by slot), and the
    /// free slots.
    wakers: Vec<Option<Waker>>,
    free: Vec<u32>,
}

thread_local! {
    /// This thread's clocks, one per ping interval in use (a server has one).
    static CLOCKS: RefCell<Vec<Weak<Clock>>> = const { RefCell::new(Vec::new()) };
}

/// A socket's place on its thread's clock. Dropping it leaves the clock; the clock stops
/// when no socket of its thread is left on it.
pub struct Beat {
    clock: Rc<Clock>,
    phase: u8,
    slot: u32,
    /// The phase's tick count when this socket last heard it.
    heard: u64,
}

impl Beat {
    /// Joins this thread's clock for `period`, starting it if needed. Call from a task on
    /// a runtime's local set (an actix worker, or a test's).
    pub fn join(period: Duration) -> Self {
        let clock = clock_for(period);
        let mut state = clock.state.borrow_mut();
        let phase = state.current;
        let place = &mut state.phases[phase];
        let slot = match place.free.pop() {
            Some(slot) => slot,
            None => {
                place.wakers.push(None);
                u32::try_from(place.wakers.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let heard = place.ticks;
        drop(state);
        Self {
            clock,
            phase: phase as u8,
            slot,
            heard,
        }
    }

    /// Resolves when this socket's phase next ticks (at once if it ticked unheard, while
    /// the socket was busy).
    pub fn heard(&mut self) -> impl Future<Output = ()> + '_ {
        NextBeat { beat: self }
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        let mut state = self.clock.state.borrow_mut();
        let place = &mut state.phases[usize::from(self.phase)];
        if let Some(waker) = place.wakers.get_mut(self.slot as usize) {
            *waker = None;
            place.free.push(self.slot);
        }
    }
}

struct NextBeat<'a> {
    beat: &'a mut Beat,
}

impl Future for NextBeat<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let beat = &mut *self.beat;
        let mut state = beat.clock.state.borrow_mut();
        let place = &mut state.phases[usize::from(beat.phase)];
        if place.ticks != beat.heard {
            beat.heard = place.ticks;
            return Poll::Ready(());
        }
        if let Some(waker) = place.wakers.get_mut(beat.slot as usize) {
            match waker {
                Some(known) if known.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }
}

/// This thread's clock for `period`, started if there is none.
fn clock_for(period: Duration) -> Rc<Clock> {
    CLOCKS.with_borrow_mut(|clocks| {
        clocks.retain(|clock| clock.strong_count() > 0);
        if let Some(clock) = clocks
            .iter()
            .filter_map(Weak::upgrade)
            .find(|c| c.period == period)
        {
            return clock;
        }
        let clock = Rc::new(Clock {
            period,
            state: RefCell::new(Phases {
                current: 0,
                phases: Default::default(),
            }),
        });
        clocks.push(Rc::downgrade(&clock));
        tokio::task::spawn_local(run(Rc::downgrade(&clock)));
        clock
    })
}

/// Ticks one phase every period / `PHASES`, until no socket holds the clock.
async fn run(clock: Weak<Clock>) {
    let Some(step) = clock.upgrade().map(|c| c.period / PHASES as u32) else {
        return;
    };
    let step = step.max(Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(clock) = clock.upgrade() else { return };
        let mut state = clock.state.borrow_mut();
        state.current = (state.current + 1) % PHASES;
        let current = state.current;
        let place = &mut state.phases[current];
        place.ticks += 1;
        for waker in place.wakers.iter_mut().filter_map(Option::take) {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const PERIOD: Duration = Duration::from_secs(16);

    fn local<F: Future>(test: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, test)
    }

    #[test]
    fn a_socket_hears_its_phase_once_per_period_first_about_a_period_after_it_joined() {
        local(async {
            let start = Instant::now();
            let mut beat = Beat::join(PERIOD);
            beat.heard().await;
            let first = start.elapsed();
            assert!(
                first <= PERIOD && first > PERIOD - PERIOD / PHASES as u32,
                "{first:?}"
            );
            beat.heard().await;
            assert_eq!(start.elapsed(), first + PERIOD);
        });
    }

    #[test]
    fn sockets_that_join_at_different_times_are_spread_over_the_period() {
        local(async {
            let start = Instant::now();
            let mut early = Beat::join(PERIOD);
            tokio::time::sleep(PERIOD / 4 + Duration::from_millis(1)).await;
            let mut late = Beat::join(PERIOD);
            early.heard().await;
            let early_at = start.elapsed();
            late.heard().await;
            let late_at = start.elapsed();
            assert_eq!(late_at - early_at, PERIOD / 4, "{early_at:?} {late_at:?}");
        });
    }

    #[test]
    fn a_tick_missed_while_busy_is_heard_at_once_afterwards() {
        local(async {
            let start = Instant::now();
            let mut beat = Beat::join(PERIOD);
            // Busy (not waiting on its beat) across its phase's tick.
            tokio::time::sleep(PERIOD + PERIOD / 2).await;
            beat.heard().await;
            assert_eq!(start.elapsed(), PERIOD + PERIOD / 2);
        });
    }

    #[test]
    fn the_clock_stops_with_its_last_socket_and_a_new_one_starts_after() {
        local(async {
            let beat = Beat::join(PERIOD);
            let clock = Rc::downgrade(&beat.clock);
            let other = Beat::join(PERIOD);
            assert!(
                Rc::ptr_eq(&beat.clock, &other.clock),
                "one clock per thread and period"
            );
            let slots = || {
                clock
                    .upgrade()
                    .map(|c| c.state.borrow().phases[0].wakers.len())
            };
            assert_eq!(slots(), Some(2));
            drop(other);
            // A freed place is taken again, not grown.
            let again = Beat::join(PERIOD);
            assert_eq!(slots(), Some(2));
            drop((beat, again));
            assert!(clock.upgrade().is_none(), "no socket holds the clock");
            tokio::time::sleep(PERIOD).await;
            let mut fresh = Beat::join(PERIOD);
            let start = Instant::now();
            fresh.heard().await;
            assert!(start.elapsed() <= PERIOD);
        });
    }
}
