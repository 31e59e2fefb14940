//! Counters and gauges for `/metrics`, in Prometheus text format. Plain atomics: the hub
//! and the connections update them without locks.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::heap;

#[derive(Debug, Default)]
pub struct Metrics {
    /// WebSockets open now.
    pub sockets: AtomicU64,
    /// Long polls the hub holds now.
    pub waiting_polls: AtomicU64,
    /// Messages accepted into the room.
    pub posted: AtomicU64,
    /// Messages handed to receivers (one per message per receiver).
    pub delivered: AtomicU64,
    /// Sockets closed because they could not keep up.
    pub slow_disconnects: AtomicU64,
    /// Requests refused because `max_connections` was reached.
    pub refused_connections: AtomicU64,
    /// 1 while the message store is reachable (always, for the in-memory room).
    pub store_up: AtomicU64,
    /// Attempts to reconnect to the store after it became unreachable.
    pub store_reconnects: AtomicU64,
    /// Times this instance reloaded every ended login after it may have missed logout
    /// announcements (they were trimmed before it read them, or its reads broke off).
    pub logout_reloads: AtomicU64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let rows = [
            (
                "chatdemo_connected_sockets",
                "gauge",
                "WebSockets open now.",
                &self.sockets,
            ),
            (
                "chatdemo_waiting_polls",
                "gauge",
                "Long polls held by the hub now.",
                &self.waiting_polls,
            ),
            (
                "chatdemo_messages_posted_total",
                "counter",
                "Messages accepted into the room.",
                &self.posted,
            ),
            (
                "chatdemo_messages_delivered_total",
                "counter",
                "Messages handed to receivers, one per message per receiver.",
                &self.delivered,
            ),
            (
                "chatdemo_slow_disconnects_total",
                "counter",
                "Sockets closed because their outgoing queue overflowed.",
                &self.slow_disconnects,
            ),
            (
                "chatdemo_refused_connections_total",
                "counter",
                "Requests refused with 503 past server.max_connections.",
                &self.refused_connections,
            ),
            (
                "chatdemo_store_up",
                "gauge",
                "1 while the message store (memory or Redis) is reachable, else 0.",
                &self.store_up,
            ),
            (
                "chatdemo_store_reconnects_total",
                "counter",
                "Attempts to reconnect to the message store after losing it.",
                &self.store_reconnects,
            ),
            (
                "chatdemo_logout_reloads_total",
                "counter",
                "Times this instance reloaded every ended login because it may have missed logout announcements (trimmed before it read them, or its reads broke off).",
                &self.logout_reloads,
            ),
        ];
        let mut out = String::new();
        let mut row = |name: &str, kind: &str, help: &str, value: u64| {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        for (name, kind, help, value) in rows {
            row(name, kind, help, value.load(Relaxed));
        }
        // Only where the allocator can tell (glibc): see `heap` for why they matter.
        if let Some(heap) = heap::stats() {
            row(
                "chatdemo_heap_mapped_bytes",
                "gauge",
                "Bytes the memory allocator has taken from the kernel, touched or not.",
                heap.mapped,
            );
            row(
                "chatdemo_heap_in_use_bytes",
                "gauge",
                "Bytes the memory allocator has handed out and not had back.",
                heap.in_use,
            );
        }
        out
    }
}
