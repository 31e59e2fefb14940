//! The message cache: the last `capacity` messages in order, with the cursor rules.
//!
//! Every message gets a sequence number. The `origin` is a cursor made up at start that
//! stands for "before the first message of this run": a page rendered while the cache is
//! empty embeds it, so its first poll misses nothing posted in between.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::frame::Entry;
use crate::domain::{Cursor, MessageId};

pub(crate) struct Cache {
    capacity: usize,
    entries: VecDeque<Arc<Entry>>,
    /// id -> sequence number, for the cached entries only.
    index: HashMap<Arc<str>, u64>,
    /// Sequence number the next message will get; the first message is 1.
    next_seq: u64,
    origin: Cursor,
}

/// What a client following `cursor` should get now.
#[derive(Debug)]
pub(crate) enum Since {
    /// Nothing yet: wait for the next message.
    Wait,
    /// These messages, oldest first; `reset` when the cursor was not known, so the client
    /// may have missed messages older than the cache.
    Messages {
        entries: Vec<Arc<Entry>>,
        reset: bool,
    },
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: VecDeque::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            next_seq: 1,
            origin: Cursor::from(format!("origin-{}", MessageId::new())),
        }
    }

    pub(crate) fn push(&mut self, entry: Arc<Entry>) {
        if self.entries.len() == self.capacity {
            if let Some(evicted) = self.entries.pop_front() {
                self.index.remove(evicted.message.id.as_str());
            }
        }
        self.index.insert(entry.id.clone(), self.next_seq);
        self.next_seq += 1;
        self.entries.push_back(entry);
    }

    /// The cursor of a client that has seen everything cached.
    pub(crate) fn newest_cursor(&self) -> Cursor {
        self.entries
            .back()
            .map_or_else(|| self.origin.clone(), |e| Cursor::from(&e.message.id))
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.iter()
    }

    pub(crate) fn since(&self, cursor: Option<&Cursor>) -> Since {
        let Some(cursor) = cursor else {
            return Since::Wait;
        };
        let first_cached_seq = self.next_seq - self.entries.len() as u64;
        let known_seq = if *cursor == self.origin {
            // The origin is only "known" while nothing has been evicted since it.
            Some(0).filter(|_| first_cached_seq <= 1)
        } else {
            self.index.get(cursor.as_str()).copied()
        };
        match known_seq {
            Some(seq) => {
                let skip = (seq + 1 - first_cached_seq) as usize;
                if skip >= self.entries.len() {
                    Since::Wait
                } else {
                    Since::Messages {
                        entries: self.entries.iter().skip(skip).cloned().collect(),
                        reset: false,
                    }
                }
            }
            None if self.entries.is_empty() => Since::Wait,
            None => Since::Messages {
                entries: self.entries.iter().cloned().collect(),
                reset: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Message;

    /// Test ids are short names; the cache treats ids as opaque.
    fn entry(id: &str) -> Arc<Entry> {
        Arc::new(Entry::new(Message::for_test(id, "b")))
    }

    fn cursor(id: &str) -> Option<Cursor> {
        Some(Cursor::from(id.to_owned()))
    }

    fn ids(since: Since) -> (Vec<String>, bool) {
        match since {
            Since::Wait => (vec![], false),
            Since::Messages { entries, reset } => (
                entries.iter().map(|e| e.message.id.to_string()).collect(),
                reset,
            ),
        }
    }

    #[test]
    fn known_cursor_gets_what_came_after_it() {
        let mut cache = Cache::new(3);
        for id in ["a", "b", "c"] {
            cache.push(entry(id));
        }
        assert_eq!(
            ids(cache.since(cursor("a").as_ref())),
            (vec!["b".into(), "c".into()], false)
        );
        assert!(matches!(cache.since(cursor("c").as_ref()), Since::Wait));
        assert!(matches!(cache.since(None), Since::Wait));
    }

    #[test]
    fn unknown_or_evicted_cursor_resets_to_the_whole_cache() {
        let mut cache = Cache::new(2);
        for id in ["a", "b", "c"] {
            cache.push(entry(id));
        }
        assert_eq!(
            ids(cache.since(cursor("a").as_ref())),
            (vec!["b".into(), "c".into()], true)
        );
        assert_eq!(
            ids(cache.since(cursor("zzz").as_ref())),
            (vec!["b".into(), "c".into()], true)
        );
    }

    #[test]
    fn unknown_cursor_with_empty_cache_waits() {
        let cache = Cache::new(2);
        assert!(matches!(cache.since(cursor("zzz").as_ref()), Since::Wait));
    }

    #[test]
    fn origin_cursor_sees_everything_until_something_is_evicted() {
        let mut cache = Cache::new(2);
        let origin = Some(cache.newest_cursor());
        assert!(matches!(cache.since(origin.as_ref()), Since::Wait));
        cache.push(entry("a"));
        cache.push(entry("b"));
        assert_eq!(
            ids(cache.since(origin.as_ref())),
            (vec!["a".into(), "b".into()], false)
        );
        cache.push(entry("c"));
        assert_eq!(
            ids(cache.since(origin.as_ref())),
            (vec!["b".into(), "c".into()], true)
        );
    }
}
