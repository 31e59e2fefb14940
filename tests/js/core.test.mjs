// Unit tests of the client core (static/chat-core.js), run by Node's built-in test runner
// with no browser: `node --test tests/js/` (cargo test runs it too: tests/js.rs).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  afterAnswer,
  afterClose,
  afterFailure,
  backoff,
  RESEND_FOR_MS,
  Roster,
  tally,
  Timeline,
  titled,
  Waker,
} from "../../static/chat-core.js";

/** @param {string} id @param {object} [more] */
const message = (id, more = {}) => ({
  id,
  from: "ann",
  body: id,
  html: `<div class="message" id="m${id}">${id}</div>`,
  time: "2026-12-06T00:00:00Z",
  kind: "message",
  ...more,
});

test("backoff doubles from 0.5 s, is capped at 30 s, and keeps the upper half random", () => {
  assert.equal(backoff(0, () => 0), 250);
  assert.equal(backoff(0, () => 1), 500);
  assert.equal(backoff(3, () => 0), 2000);
  assert.equal(backoff(3, () => 1), 4000);
  assert.equal(backoff(20, () => 0), 15000);
  assert.equal(backoff(20, () => 1), 30000);
});

test("a socket's close code decides: a dead end, at once, or after a backoff", () => {
  assert.equal(afterClose(1008), "dead");
  assert.equal(afterClose(1013), "now");
  for (const code of [1000, 1001, 1006, 1011, 4000]) assert.equal(afterClose(code), "later");
});

test("a post's answer: in, again later (Retry-After first), or refused", () => {
  assert.deepEqual(afterAnswer(200, null, 0, 0), { action: "done" });
  assert.deepEqual(afterAnswer(503, "2", 0, 0), { action: "retry", waitMs: 2000 });
  assert.deepEqual(afterAnswer(429, null, 3, 0, () => 1), { action: "retry", waitMs: 4000 });
  for (const status of [408, 502, 504]) {
    assert.equal(afterAnswer(status, null, 0, 0).action, "retry", `${status}`);
  }
  // Refused: the post stored nothing and the same post would be refused again.
  for (const status of [400, 403, 413, 422, 500]) {
    assert.deepEqual(afterAnswer(status, null, 0, 0), { action: "refuse" }, `${status}`);
  }
  // Past the window in which the server remembers the key: no more resends.
  assert.deepEqual(afterAnswer(503, "30", 9, RESEND_FOR_MS - 1000), { action: "refuse" });
  assert.deepEqual(afterFailure(1000, RESEND_FOR_MS - 2000), { action: "retry", waitMs: 1000 });
  assert.deepEqual(afterFailure(1000, RESEND_FOR_MS), { action: "refuse" });
});

test("the timeline shows each entry once and follows the newest", () => {
  const shown = new Set(["1"]);
  const timeline = new Timeline("1", (id) => shown.has(id));
  // A resumed socket repeats what the page has; a batch may repeat itself.
  const { fresh, gap } = timeline.take({ messages: [message("1"), message("2"), message("2")] });
  assert.deepEqual(fresh.map((m) => m.id), ["2"]);
  assert.equal(gap, false);
  assert.equal(timeline.cursor, "2");
  for (const m of fresh) shown.add(m.id);
  // Nothing new: the cursor still moves to the batch's last.
  assert.deepEqual(timeline.take({ messages: [message("2")] }).fresh, []);
  assert.deepEqual(timeline.take({}).fresh, []);
  assert.equal(timeline.cursor, "2");
});

test("a reset says that messages may have been missed, only when it brings something", () => {
  const timeline = new Timeline("gone", () => false);
  assert.deepEqual(timeline.take({ messages: [], reset: true }), { fresh: [], gap: false });
  const { fresh, gap } = timeline.take({ messages: [message("7")], reset: true });
  assert.equal(fresh.length, 1);
  assert.equal(gap, true);
  assert.equal(timeline.cursor, "7");
});

test("the roster applies folded notices: the count exact, the names as far as named", () => {
  const roster = Roster.of({ count: 2, users: [{ name: "ann", since: "" }, { name: "bob", since: "" }] });
  assert.equal(roster.apply(message("1", { kind: "join", names: ["cy"], count: 1 })), false);
  assert.deepEqual(roster.names, ["ann", "bob", "cy"]);
  // 212 joined, 20 named: the count is whole, and the page asks for the list later.
  const names = Array.from({ length: 20 }, (_, i) => `u${i}`);
  assert.equal(roster.apply(message("2", { kind: "join", names, count: 212 })), true);
  assert.equal(roster.count, 215);
  assert.equal(roster.names.length, 23);
  assert.equal(roster.more(), 192);
  // A leave removes one row per name (two logins may share one) and its count.
  roster.apply(message("3", { kind: "leave", names: ["ann"], count: 1 }));
  assert.equal(roster.count, 214);
  assert.equal(roster.names.includes("ann"), false);
  // An old-style notice without names counts its `from`.
  roster.apply(message("4", { kind: "join", from: "dee" }));
  assert.equal(roster.count, 215);
  assert.equal(roster.names.at(-1), "dee");
  // Never below zero, never more names than the count.
  roster.apply(message("5", { kind: "leave", names: ["bob"], count: 999 }));
  assert.equal(roster.count, 0);
  assert.deepEqual(roster.names, []);
});

test("the roster keeps at most its cap of names", () => {
  const roster = new Roster([], 0, 3);
  roster.apply(message("1", { kind: "join", names: ["a", "b", "c", "d"], count: 4 }));
  assert.deepEqual(roster.names, ["a", "b", "c"]);
  assert.equal(roster.more(), 1);
});

test("a batch's tally: others' posts are unread, the reader's own is theirs, notices neither", () => {
  const batch = [
    message("1", { from: "bob" }),
    message("2", { from: "me" }),
    message("3", { from: "bob", kind: "join", names: ["bob"], count: 1 }),
    message("4", { from: "cy" }),
  ];
  assert.deepEqual(tally(batch, "me"), { unread: 2, mine: true });
  assert.deepEqual(tally([], "me"), { unread: 0, mine: false });
  assert.equal(titled("Chat", 0), "Chat");
  assert.equal(titled("Chat", 3), "(3) Chat");
});

test("a wake ends every wait at once; without one a wait runs its time", async () => {
  const waker = new Waker();
  let woken = 0;
  waker.onWake(() => (woken += 1));
  const started = Date.now();
  const waits = [waker.sleep(10_000), waker.sleep(10_000)];
  setTimeout(() => waker.wake(), 20);
  await Promise.all(waits);
  assert.ok(Date.now() - started < 5000, "woken, not waited out");
  assert.equal(woken, 1);
  assert.equal(waker.sleepers.size, 0);
  const short = Date.now();
  await waker.sleep(30);
  assert.ok(Date.now() - short >= 25);
});
