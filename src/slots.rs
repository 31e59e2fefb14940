//! Each login's open WebSockets and held long polls on this instance: capped together, so
//! one login cannot hold an unbounded share of the server's connections, and its sockets
//! closable, so a logout ends them (per instance: each process counts its own).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::auth::LoginId;
use crate::error::AppError;
use crate::metrics::Metrics;

/// The sockets of every login here. One pointer: every socket and held poll keeps one.
#[derive(Clone)]
pub struct SocketLimits(Arc<Limits>);

struct Limits {
    per_login: usize,
    open: Mutex<HashMap<LoginId, LoginSockets>>,
    metrics: Arc<Metrics>,
}

/// One login's open sockets and held polls here.
struct LoginSockets {
    /// Sockets and held polls together.
    count: usize,
    /// Set when the login is ended (logout): every socket of it closes. Made for the first
    /// socket: a login that only polls (an entry made and removed per poll) needs none.
    ended: Option<Arc<Ending>>,
}

/// A login's end, as its sockets wait for it: a flag, and a place for each socket of the
/// login here, holding its waker while it waits. (A `watch` channel is over 400 bytes, and
/// every idle socket kept one; with a `Notify`, every idle socket's wait was 88 bytes of
/// its task, where its place is 24 bytes here.)
#[derive(Default)]
struct Ending {
    ended: AtomicBool,
    places: Mutex<Vec<Place>>,
}

enum Place {
    Free,
    /// A socket's, with its waker while it waits for the end.
    Taken(Option<Waker>),
}

/// A socket's place: counted per login and in the metrics until dropped.
pub struct SocketSlot {
    slot: PollSlot,
    /// Set when the login is ended.
    ended: Arc<Ending>,
    /// This socket's place among its login's wakers.
    place: usize,
}

/// A held poll's place: counted per login until dropped.
pub struct PollSlot {
    limits: SocketLimits,
    login_id: LoginId,
}

impl SocketLimits {
    pub fn new(per_login: usize, metrics: Arc<Metrics>) -> Self {
        Self(Arc::new(Limits {
            per_login,
            open: Mutex::default(),
            metrics,
        }))
    }

    pub fn acquire(&self, login_id: &LoginId) -> Result<SocketSlot, AppError> {
        let ended = self.take(login_id, |sockets| {
            sockets.ended.get_or_insert_default().clone()
        })?;
        self.0.metrics.sockets.fetch_add(1, Relaxed);
        let place = {
            let mut places = ended.places.lock().unwrap_or_else(|e| e.into_inner());
            match places.iter().position(|place| matches!(place, Place::Free)) {
                Some(free) => {
                    places[free] = Place::Taken(None);
                    free
                }
                None => {
                    // One at a time: most logins have one socket here, and a push would
                    // make room for four.
                    places.reserve_exact(1);
                    places.push(Place::Taken(None));
                    places.len() - 1
                }
            }
        };
        Ok(SocketSlot {
            slot: PollSlot {
                limits: self.clone(),
                login_id: *login_id,
            },
            ended,
            place,
        })
    }

    /// A held poll's place among its login's connections.
    pub fn acquire_poll(&self, login_id: &LoginId) -> Result<PollSlot, AppError> {
        self.take(login_id, |_| ())?;
        Ok(PollSlot {
            limits: self.clone(),
            login_id: *login_id,
        })
    }

    /// Counts one more connection of `login_id`, if it is under the cap, and hands its
    /// entry to `then`.
    fn take<T>(
        &self,
        login_id: &LoginId,
        then: impl FnOnce(&mut LoginSockets) -> T,
    ) -> Result<T, AppError> {
        let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        let sockets = open.entry(*login_id).or_insert(LoginSockets {
            count: 0,
            ended: None,
        });
        if sockets.count >= self.0.per_login {
            return Err(AppError::TooManyConnections);
        }
        sockets.count += 1;
        Ok(then(sockets))
    }

    /// Closes every socket of `logins` here (1008).
    pub fn end(&self, logins: &[LoginId]) {
        let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        for id in logins {
            if let Some(sockets) = open.get_mut(id) {
                // Made here if only polls are held, so a socket that comes after is
                // ended too (as long as the entry lives).
                let ending = sockets.ended.get_or_insert_default();
                ending.ended.store(true, SeqCst);
                let mut places = ending.places.lock().unwrap_or_else(|e| e.into_inner());
                for place in places.iter_mut() {
                    if let Place::Taken(waiting) = place {
                        if let Some(waker) = waiting.take() {
                            waker.wake();
                        }
                    }
                }
            }
        }
    }
}

impl SocketSlot {
    /// Whether the login has been ended (say, between its upgrade's check and now).
    pub fn is_ended(&self) -> bool {
        self.ended.ended.load(SeqCst)
    }

    /// Resolves when the login is ended; pending forever otherwise.
    pub fn ended(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_ended() {
                return Poll::Ready(());
            }
            let mut places = self.ended.places.lock().unwrap_or_else(|e| e.into_inner());
            // Again under the lock: `end` sets the flag and then wakes under this lock, so
            // an end after this read finds the waker stored below.
            if self.is_ended() {
                return Poll::Ready(());
            }
            if let Some(Place::Taken(waker)) = places.get_mut(self.place) {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
            }
            Poll::Pending
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.slot.limits.0.metrics.sockets.fetch_sub(1, Relaxed);
        let mut places = self.ended.places.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(place) = places.get_mut(self.place) {
            *place = Place::Free;
        }
        while matches!(places.last(), Some(Place::Free)) {
            places.pop();
        }
    }
}

impl Drop for PollSlot {
    fn drop(&mut self) {
        let mut open = self.limits.0.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sockets) = open.get_mut(&self.login_id) {
            sockets.count -= 1;
            if sockets.count == 0 {
                open.remove(&self.login_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn login(id: &str) -> LoginId {
        LoginId::parse(&format!("{:0>32}", hex::encode(id))).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_end_wakes_every_waiting_socket_of_the_login_and_no_other() {
        let limits = SocketLimits::new(10, Arc::default());
        let (ann, bob) = (login("ann"), login("bob"));
        let waiting = |id: &LoginId| {
            let mut slot = limits.acquire(id).unwrap();
            tokio::spawn(async move { slot.ended().await })
        };
        let (ann1, ann2, bob1) = (waiting(&ann), waiting(&ann), waiting(&bob));
        // Busy (not waiting) when the end comes: it sees it on its next look.
        let mut busy = limits.acquire(&ann).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!ann1.is_finished() && !ann2.is_finished() && !bob1.is_finished());
        limits.end(std::slice::from_ref(&ann));
        tokio::time::timeout(Duration::from_secs(5), async {
            ann1.await.unwrap();
            ann2.await.unwrap();
        })
        .await
        .expect("both of ann's sockets hear the end");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!bob1.is_finished(), "bob is not ended");
        assert!(busy.is_ended());
        tokio::time::timeout(Duration::from_secs(5), busy.ended())
            .await
            .unwrap();
        // A socket that comes while the login's entry lives (the busy one holds it) is
        // ended at once.
        let late = limits.acquire(&ann).unwrap();
        assert!(late.is_ended());
    }

    #[test]
    fn a_closed_socket_gives_its_place_back() {
        let limits = SocketLimits::new(10, Arc::default());
        let ann = login("ann");
        let first = limits.acquire(&ann).unwrap();
        let second = limits.acquire(&ann).unwrap();
        let places = |slot: &SocketSlot| slot.ended.places.lock().unwrap().len();
        assert_eq!(places(&second), 2);
        drop(first);
        let third = limits.acquire(&ann).unwrap();
        assert_eq!((third.place, places(&third)), (0, 2));
    }
}
