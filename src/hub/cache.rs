//! The message cache: the newest `capacity` entries of one epoch of the room's log, in
//! position order, with the cursor rules.
//!
//! Positions only grow, so a cursor is a place in the order, not just a key: the answer for
//! it is every cached entry after its position. The `floor` is the position after which
//! the cache is complete (the origin until something is evicted, then the newest evicted
//! entry): a cursor at or after it misses nothing; one before it may have missed entries
//! and gets the whole cache with `reset`, and so does one from another epoch or one that is
//! not an id at all. A cursor ahead of the newest entry (another instance has read further)
//! waits for what comes after it.

use std::collections::VecDeque;
use std::sync::Arc;

use super::frame::Entry;
use crate::domain::{Cursor, Epoch, MessageId, Position};

pub(crate) struct Cache {
    capacity: usize,
    epoch: Epoch,
    /// Ascending positions.
    entries: VecDeque<Arc<Entry>>,
    floor: Position,
}

/// What a client following `cursor` should get now.
#[derive(Debug)]
pub(crate) enum Since {
    /// Nothing yet: wait for the next message.
    Wait,
    /// The cursor is an id of this epoch past the newest entry held: another instance
    /// has read further than this one. Wait until this one has, then ask again.
    Ahead,
    /// These messages, oldest first; `reset` when the client may have missed messages
    /// older than the cache.
    Messages {
        entries: Vec<Arc<Entry>>,
        reset: bool,
    },
}

impl Cache {
    /// An empty cache of a log that starts now, or is known to be complete after `floor`.
    pub(crate) fn new(capacity: usize, epoch: Epoch, floor: Position) -> Self {
        Self {
            capacity,
            epoch,
            entries: VecDeque::with_capacity(capacity),
            floor,
        }
    }

    /// A cache of a log's newest `entries` (oldest first), complete after `floor`.
    pub(crate) fn of_log(
        capacity: usize,
        epoch: Epoch,
        floor: Position,
        entries: &[Arc<Entry>],
    ) -> Self {
        let mut cache = Self::new(capacity, epoch, floor);
        for entry in entries {
            cache.push(entry.clone());
        }
        cache
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The newest position held (or the floor, when empty).
    pub(crate) fn head(&self) -> Position {
        self.entries
            .back()
            .map_or(self.floor, |e| e.message.id.position())
    }

    /// Appends an entry of this epoch after the newest; anything else is not the next entry
    /// and is ignored (a repeat from a reader that resumed, say). Says whether it was added.
    pub(crate) fn push(&mut self, entry: Arc<Entry>) -> bool {
        let id = &entry.message.id;
        if *id.epoch() != self.epoch || id.position() <= self.head() {
            return false;
        }
        if self.entries.len() == self.capacity {
            if let Some(evicted) = self.entries.pop_front() {
                self.floor = evicted.message.id.position();
            }
        }
        self.entries.push_back(entry);
        true
    }

    /// The cursor of a client that has seen everything cached.
    pub(crate) fn newest_cursor(&self) -> Cursor {
        Cursor::from(&MessageId::new(&self.epoch, self.head()))
    }

    /// The cached entry at `position`, if there is one.
    pub(crate) fn get(&self, position: Position) -> Option<&Arc<Entry>> {
        let at = self
            .entries
            .partition_point(|e| e.message.id.position() < position);
        self.entries
            .get(at)
            .filter(|e| e.message.id.position() == position)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.iter()
    }

    /// What a client whose cursor the room does not know gets: the whole cache with
    /// `reset` (or, while the cache is empty, a wait for the first entry).
    pub(crate) fn reset(&self) -> Since {
        if self.entries.is_empty() {
            Since::Wait
        } else {
            Since::Messages {
                entries: self.entries.iter().cloned().collect(),
                reset: true,
            }
        }
    }

    pub(crate) fn since(&self, cursor: Option<&Cursor>) -> Since {
        let Some(cursor) = cursor else {
            return Since::Wait;
        };
        let known = cursor
            .position_in(&self.epoch)
            .filter(|position| *position >= self.floor);
        match known {
            Some(position) if position > self.head() => Since::Ahead,
            Some(position) => {
                let after = self
                    .entries
                    .partition_point(|e| e.message.id.position() <= position);
                if after == self.entries.len() {
                    Since::Wait
                } else {
                    Since::Messages {
                        entries: self.entries.range(after..).cloned().collect(),
                        reset: false,
                    }
                }
            }
            None => self.reset(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Message;

    fn epoch() -> Epoch {
        Epoch::parse("e1").unwrap()
    }

    fn id(n: u64) -> MessageId {
        MessageId::new(&epoch(), Position { ms: 100, seq: n })
    }

    fn entry(n: u64) -> Arc<Entry> {
        Arc::new(Entry::new(Message::for_test(&id(n), "b")))
    }

    fn cursor(n: u64) -> Option<Cursor> {
        Some(Cursor::from(&id(n)))
    }

    fn raw(text: &str) -> Option<Cursor> {
        Some(Cursor::from(text.to_owned()))
    }

    fn cache_of(capacity: usize, entries: std::ops::RangeInclusive<u64>) -> Cache {
        let mut cache = Cache::new(capacity, epoch(), Position::ORIGIN);
        for n in entries {
            assert!(cache.push(entry(n)));
        }
        cache
    }

    pub(super) fn seqs(since: Since) -> (Vec<u64>, bool) {
        match since {
            Since::Wait | Since::Ahead => (vec![], false),
            Since::Messages { entries, reset } => (
                entries
                    .iter()
                    .map(|e| e.message.id.position().seq)
                    .collect(),
                reset,
            ),
        }
    }

    #[test]
    fn known_cursor_gets_what_came_after_it() {
        let cache = cache_of(3, 1..=3);
        assert_eq!(seqs(cache.since(cursor(1).as_ref())), (vec![2, 3], false));
        assert!(matches!(cache.since(cursor(3).as_ref()), Since::Wait));
        assert!(matches!(cache.since(None), Since::Wait));
    }

    #[test]
    fn unknown_or_evicted_cursor_resets_to_the_whole_cache() {
        let cache = cache_of(2, 1..=3);
        // 2 and 3 are cached; 1 was evicted, so a client at 1 has missed nothing...
        assert_eq!(seqs(cache.since(cursor(1).as_ref())), (vec![2, 3], false));
        // ... but a client at the origin may have missed 1.
        let origin = Cursor::from(&MessageId::new(&epoch(), Position::ORIGIN));
        assert_eq!(seqs(cache.since(Some(&origin))), (vec![2, 3], true));
        for unknown in ["zzz", "e2-100-2", ""] {
            assert_eq!(seqs(cache.since(raw(unknown).as_ref())), (vec![2, 3], true));
        }
    }

    #[test]
    fn unknown_cursor_with_empty_cache_waits() {
        let cache = Cache::new(2, epoch(), Position::ORIGIN);
        assert!(matches!(cache.since(raw("zzz").as_ref()), Since::Wait));
    }

    #[test]
    fn origin_cursor_sees_everything_until_something_is_evicted() {
        let mut cache = Cache::new(2, epoch(), Position::ORIGIN);
        let origin = Some(cache.newest_cursor());
        assert!(matches!(cache.since(origin.as_ref()), Since::Wait));
        cache.push(entry(1));
        cache.push(entry(2));
        assert_eq!(seqs(cache.since(origin.as_ref())), (vec![1, 2], false));
        cache.push(entry(3));
        assert_eq!(seqs(cache.since(origin.as_ref())), (vec![2, 3], true));
    }

    #[test]
    fn a_cursor_ahead_of_the_cache_waits_for_what_follows_it() {
        let mut cache = cache_of(5, 1..=2);
        let ahead = cursor(4);
        assert!(matches!(cache.since(ahead.as_ref()), Since::Ahead));
        cache.push(entry(3));
        cache.push(entry(4));
        assert!(matches!(cache.since(ahead.as_ref()), Since::Wait));
        cache.push(entry(5));
        assert_eq!(seqs(cache.since(ahead.as_ref())), (vec![5], false));
    }

    #[test]
    fn only_an_id_of_this_epoch_past_the_head_is_ahead() {
        let cache = cache_of(5, 1..=2);
        assert!(matches!(cache.since(cursor(3).as_ref()), Since::Ahead));
        assert!(matches!(cache.since(cursor(2).as_ref()), Since::Wait));
        assert!(matches!(
            cache.since(raw("e2-100-9").as_ref()),
            Since::Messages { reset: true, .. }
        ));
        assert!(matches!(
            cache.since(raw("zzz").as_ref()),
            Since::Messages { reset: true, .. }
        ));
        assert!(matches!(cache.since(None), Since::Wait));
    }

    #[test]
    fn repeated_or_foreign_entries_are_not_pushed() {
        let mut cache = cache_of(5, 1..=2);
        assert!(!cache.push(entry(2)));
        assert!(!cache.push(entry(1)));
        let foreign = MessageId::new(&Epoch::parse("e2").unwrap(), Position { ms: 100, seq: 9 });
        assert!(!cache.push(Arc::new(Entry::new(Message::for_test(&foreign, "b")))));
        assert_eq!(cache.entries().count(), 2);
    }

    #[test]
    fn an_entry_is_found_by_its_position_only_while_cached() {
        let cache = cache_of(2, 1..=3);
        let found = |n| {
            cache
                .get(id(n).position())
                .map(|e| e.message.id.position().seq)
        };
        assert_eq!(
            (found(1), found(2), found(3), found(4)),
            (None, Some(2), Some(3), None)
        );
    }

    #[test]
    fn a_cursor_between_entries_gets_those_after_it() {
        let mut cache = Cache::new(5, epoch(), Position::ORIGIN);
        for seq in [2, 4, 6] {
            cache.push(entry(seq));
        }
        assert_eq!(seqs(cache.since(cursor(3).as_ref())), (vec![4, 6], false));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::Message;

    fn entry(epoch: &Epoch, seq: u64) -> Arc<Entry> {
        let id = MessageId::new(epoch, Position { ms: 100, seq });
        Arc::new(Entry::new(Message::for_test(&id, "b")))
    }

    /// What a client at `cursor` should get, worked out from every entry ever pushed.
    fn model(all: &[u64], capacity: usize, cursor: u64) -> (Vec<u64>, bool, &'static str) {
        let cached = &all[all.len().saturating_sub(capacity)..];
        // The cache is complete after the newest evicted entry (or from the origin).
        let floor = all.len().checked_sub(capacity + 1).map(|i| all[i]);
        let head = all.last().copied();
        if head.is_some_and(|h| cursor > h) || (head.is_none() && floor.is_none()) {
            // Past the newest: another instance is ahead (an empty log: the same).
            return (vec![], false, "ahead");
        }
        if floor.is_some_and(|f| cursor < f) {
            return (cached.to_vec(), true, "messages");
        }
        let after: Vec<u64> = cached.iter().copied().filter(|&s| s > cursor).collect();
        if after.is_empty() {
            (vec![], false, "wait")
        } else {
            (after, false, "messages")
        }
    }

    fn observe(since: Since) -> (Vec<u64>, bool, &'static str) {
        let kind = match &since {
            Since::Wait => "wait",
            Since::Ahead => "ahead",
            Since::Messages { .. } => "messages",
        };
        let (seqs, reset) = super::tests::seqs(since);
        (seqs, reset, kind)
    }

    proptest! {
        /// Random pushes (increasing positions with gaps, some repeats and some foreign
        /// epochs that must be ignored) and random cursors: the cache answers exactly as a
        /// plain list of everything pushed would.
        #[test]
        fn answers_like_a_list_of_everything_pushed(
            capacity in 1usize..8,
            steps in proptest::collection::vec((1u64..4, any::<bool>(), any::<bool>()), 0..40),
            cursors in proptest::collection::vec(0u64..130, 1..20),
        ) {
            let epoch = Epoch::parse("e1").unwrap();
            let other = Epoch::parse("e2").unwrap();
            let mut cache = Cache::new(capacity, epoch.clone(), Position::ORIGIN);
            let mut all = Vec::new();
            let mut seq = 0;
            for (gap, repeat, foreign) in steps {
                seq += gap;
                prop_assert!(cache.push(entry(&epoch, seq)));
                all.push(seq);
                if repeat {
                    prop_assert!(!cache.push(entry(&epoch, seq)));
                }
                if foreign {
                    prop_assert!(!cache.push(entry(&other, seq + 1)));
                }
            }
            for cursor in cursors {
                let id = MessageId::new(&epoch, Position { ms: 100, seq: cursor });
                let got = observe(cache.since(Some(&Cursor::from(&id))));
                prop_assert_eq!(got, model(&all, capacity, cursor), "cursor {}", cursor);
                // A cursor from another epoch, or not an id at all, gets the whole cache.
                let cached: Vec<u64> = all[all.len().saturating_sub(capacity)..].to_vec();
                let foreign = Cursor::from(&MessageId::new(&other, Position { ms: 100, seq: cursor }));
                let want = if cached.is_empty() { (vec![], false, "wait") } else { (cached, true, "messages") };
                prop_assert_eq!(observe(cache.since(Some(&foreign))), want);
            }
        }
    }
}
