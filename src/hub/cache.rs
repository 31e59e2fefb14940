//! The message cache: the last `capacity` messages in order, with the cursor rules.
//!
//! Every message gets a sequence number. The `origin` is a cursor made up at start that
//! stands for "before the first message of this run": a page rendered while the cache is
//! empty embeds it, so its first poll misses nothing posted in between.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::frame::Entry;

pub struct Cache {
    capacity: usize,
    entries: VecDeque<Arc<Entry>>,
    /// id -> sequence number, for the cached entries only.
    index: HashMap<Arc<str>, u64>,
    /// Sequence number the next message will get; the first message is 1.
    next_seq: u64,
    origin: String,
}

/// What a client following `cursor` should get now.
#[derive(Debug)]
pub enum Since {
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
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: VecDeque::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            next_seq: 1,
            origin: format!("origin-{}", crate::domain::new_message_id()),
        }
    }

    pub fn push(&mut self, entry: Arc<Entry>) {
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
    pub fn newest_cursor(&self) -> &str {
        self.entries
            .back()
            .map_or(self.origin.as_str(), |e| e.message.id.as_str())
    }

    pub fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.iter()
    }

    pub fn since(&self, cursor: Option<&str>) -> Since {
        let Some(cursor) = cursor else {
            return Since::Wait;
        };
        let first_cached_seq = self.next_seq - self.entries.len() as u64;
        let known_seq = if cursor == self.origin {
            // The origin is only "known" while nothing has been evicted since it.
            Some(0).filter(|_| first_cached_seq <= 1)
        } else {
            self.index.get(cursor).copied()
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

    fn entry(id: &str) -> Arc<Entry> {
        Arc::new(Entry::new(Message {
            id: id.into(),
            from: "a".into(),
            body: "b".into(),
            html: "h".into(),
        }))
    }

    fn ids(since: Since) -> (Vec<String>, bool) {
        match since {
            Since::Wait => (vec![], false),
            Since::Messages { entries, reset } => (
                entries.iter().map(|e| e.message.id.clone()).collect(),
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
            ids(cache.since(Some("a"))),
            (vec!["b".into(), "c".into()], false)
        );
        assert!(matches!(cache.since(Some("c")), Since::Wait));
        assert!(matches!(cache.since(None), Since::Wait));
    }

    #[test]
    fn unknown_or_evicted_cursor_resets_to_the_whole_cache() {
        let mut cache = Cache::new(2);
        for id in ["a", "b", "c"] {
            cache.push(entry(id));
        }
        assert_eq!(
            ids(cache.since(Some("a"))),
            (vec!["b".into(), "c".into()], true)
        );
        assert_eq!(
            ids(cache.since(Some("zzz"))),
            (vec!["b".into(), "c".into()], true)
        );
    }

    #[test]
    fn unknown_cursor_with_empty_cache_waits() {
        let cache = Cache::new(2);
        assert!(matches!(cache.since(Some("zzz")), Since::Wait));
    }

    #[test]
    fn origin_cursor_sees_everything_until_something_is_evicted() {
        let mut cache = Cache::new(2);
        let origin = cache.newest_cursor().to_owned();
        assert!(matches!(cache.since(Some(&origin)), Since::Wait));
        cache.push(entry("a"));
        cache.push(entry("b"));
        assert_eq!(
            ids(cache.since(Some(&origin))),
            (vec!["a".into(), "b".into()], false)
        );
        cache.push(entry("c"));
        assert_eq!(
            ids(cache.since(Some(&origin))),
            (vec!["b".into(), "c".into()], true)
        );
    }
}
