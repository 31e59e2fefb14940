// @ts-check
// chatdemo client, an ES module: the boot module, which wires the core (chat-core.js: the
// cursor, deduplication, who is online, the retry rules; no DOM) to the page and the
// network. It keeps #inbox up to date over a WebSocket when the browser has one and it
// connects, else over HTTP long polling, and posts through the same channel. The cursor
// (the id of the newest message shown) is this script's own state: every (re)connection
// resumes from it, and messages are deduplicated by id, so switching transports loses
// and repeats nothing.
//
// It tells a hiccup from a dead end: a lost connection is retried with backoff, but a
// login that is gone (a 403, or close 1008 after a logout) stops everything and offers
// the login link instead of retrying forever.
//
// Every post has a key (a random UUID, the socket frame's nonce or the HTTP post's
// Idempotency-Key) and is resent with that same key until the server answers it: after a
// 503, a 429, a dropped connection or a missing ack. The server stores a key once, so a
// resend is never a second copy.

// The core (no DOM), at the same version as this file.
/** @type {typeof import("./chat-core.js")} */
const core = await import(`./chat-core.js${new URL(import.meta.url).search}`);
const { afterAnswer, afterClose, afterFailure, backoff, Roster, tally, Timeline, titled, Waker } =
  core;

// A socket that fails this many times in a row gives way to long polling ...
const SOCKET_FAILURES_BEFORE_FALLBACK = 3;
// ... and is tried again after this long.
const UPGRADE_RETRY_MS = 60000;
// A socket that lived less than this counts as failed ("keeps dropping").
const SOCKET_MIN_HEALTHY_MS = 5000;
// Long polls that fail this many times in a row show "offline".
const FAILURES_BEFORE_OFFLINE = 4;
// How long a post over the socket waits for its ack before it is resent.
const ACK_TIMEOUT_MS = 10000;
// Entries kept in the page; older ones are dropped from the top.
const INBOX_LIMIT = 1000;
// How close to the bottom (in pixels) still counts as reading the newest messages.
const AT_BOTTOM_SLACK_PX = 40;
// While the store is away, how often the page asks /healthz whether it is back.
const STORE_CHECK_MS = 2000;
// After a folded notice the list is fetched again within this window, at a random moment,
// so a crowd's notice does not make every page ask at once.
const ROSTER_REFRESH_MS = [5000, 30000];

/**
 * A socket the long poll's upgrade opened, kept for the socket transport to take over:
 * what it received meanwhile, in order, and its close code if it closed.
 * @typedef {{socket: WebSocket, received: string[], closedWith: number | null}} Probe
 */

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const waker = new Waker();
window.addEventListener("online", () => waker.wake());
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") waker.wake();
});

function xsrfToken(form) {
  const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  if (match) return decodeURIComponent(match[1]);
  return form.querySelector("input[name=_xsrf]")?.value ?? "";
}

function randomNonce() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** True when the browser's login is gone (the page would send it to the login). A
 * network failure is not proof of that, so it answers false. */
async function loginIsGone() {
  try {
    const response = await fetch("/", { redirect: "manual", credentials: "same-origin" });
    return response.type === "opaqueredirect" || response.status === 403;
  } catch {
    return false;
  }
}

// ---- who is online --------------------------------------------------------------------

class Presence {
  constructor() {
    this.box = /** @type {HTMLDetailsElement | null} */ (document.getElementById("presence"));
    this.list = document.getElementById("online");
    this.countBox = document.getElementById("online-count");
    this.moreBox = document.getElementById("online-more");
    this.moreCount = document.getElementById("online-more-count");
    this.refreshTimer = null;
    const names = this.list ? Array.from(this.list.children, (item) => item.textContent) : [];
    this.roster = new Roster(names, Number(this.countBox?.textContent ?? names.length));
    // Folded away behind the count on a narrow screen.
    if (this.box && window.matchMedia?.("(max-width: 40em)").matches) this.box.open = false;
  }

  render() {
    if (!this.list) return;
    this.list.replaceChildren(
      ...this.roster.names.map((name) => {
        const item = document.createElement("li");
        item.textContent = name;
        return item;
      }),
    );
    this.countBox.textContent = String(this.roster.count);
    if (this.moreBox) {
      this.moreCount.textContent = String(this.roster.more());
      this.moreBox.hidden = this.roster.more() === 0;
    }
  }

  apply(notice) {
    if (!this.list) return;
    if (this.roster.apply(notice)) this.refreshSoon();
    this.render();
  }

  refreshSoon() {
    if (this.refreshTimer !== null) return;
    const [low, high] = ROSTER_REFRESH_MS;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refresh();
    }, low + Math.random() * (high - low));
  }

  /** The whole list again, after anything that may have made the notices miss a change. */
  async refresh() {
    if (!this.list) return;
    try {
      const response = await fetch(`/a/presence?limit=${core.ROSTER_CAP}`, {
        credentials: "same-origin",
      });
      if (!response.ok) return;
      this.roster = Roster.of(await response.json());
      this.render();
    } catch {
      // Next reconnect tries again.
    }
  }
}

// ---- the page ---------------------------------------------------------------------------

class Room {
  constructor() {
    this.inbox = document.getElementById("inbox");
    this.form = /** @type {HTMLFormElement} */ (document.getElementById("messageform"));
    this.input = /** @type {HTMLInputElement} */ (document.getElementById("message"));
    this.statusBox = document.getElementById("status");
    this.errorBox = document.getElementById("error");
    this.newButton = document.getElementById("new-messages");
    this.presence = new Presence();
    // Messages under this name are marked as the reader's own.
    this.me = document.getElementById("user")?.textContent ?? "";
    this.title = document.title;
    // Messages that arrived while the tab was hidden, counted in its title.
    this.unread = 0;
    // Where the page left off; from here on only this script moves it.
    this.timeline = new Timeline(
      this.inbox.dataset.cursor ?? "",
      (id) => document.getElementById(`m${id}`) !== null,
    );
    this.dead = false;
    this.connected = false;
    this.newButton.addEventListener("click", () => this.scrollToBottom());
    window.addEventListener("scroll", () => {
      if (this.atBottom()) this.newButton.hidden = true;
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.setUnread(0);
    });
    localizeTimes(this.inbox);
    for (const node of this.inbox.querySelectorAll(".message")) {
      if (node.querySelector("b")?.textContent === `${this.me}: `) node.classList.add("mine");
    }
    // The page opens at the newest message, as a chat does.
    this.scrollToBottom();
  }

  get cursor() {
    return this.timeline.cursor;
  }

  setUnread(count) {
    this.unread = count;
    document.title = titled(this.title, count);
  }

  setStatus(transport, state) {
    if (this.dead) return;
    this.statusBox.dataset.transport = transport;
    this.statusBox.dataset.state = state;
    if (state === "connected" && !this.connected) {
      // Every (re)connection may have missed notices while it was down.
      this.presence.refresh();
    }
    this.connected = state === "connected";
    this.renderStatus();
  }

  /** Whether the store takes posts: "up", or "down" after one was refused because it is
   * away. Reading still works then, so the badge says both. */
  setStore(state) {
    if (this.dead || this.statusBox.dataset.store === state) return;
    this.statusBox.dataset.store = state;
    this.renderStatus();
  }

  renderStatus() {
    const { transport, state, store } = this.statusBox.dataset;
    const name = { websocket: "WebSocket", longpoll: "Long polling" }[transport] ?? "";
    const blocked = state === "connected" && store === "down";
    const shown = blocked ? "connected, messages can\u2019t be sent right now" : state;
    this.statusBox.textContent = (name ? `${name} \u00b7 ` : "") + shown;
  }

  showError(text) {
    this.errorBox.textContent = text;
    this.errorBox.hidden = !text;
  }

  /** The dead end: the login is gone. Everything stops; the reader gets the way back. */
  loggedOut() {
    if (this.dead) return;
    this.setStatus("none", "logged out");
    this.dead = true;
    const link = document.createElement("a");
    link.href = "/auth/login?next=%2F";
    link.textContent = "Log in again";
    this.errorBox.replaceChildren("You are logged out. ", link);
    this.errorBox.hidden = false;
    for (const control of this.form.querySelectorAll("input, button")) {
      /** @type {HTMLInputElement | HTMLButtonElement} */ (control).disabled = true;
    }
  }

  atBottom() {
    const bottom = window.innerHeight + window.scrollY;
    return bottom >= document.documentElement.scrollHeight - AT_BOTTOM_SLACK_PX;
  }

  scrollToBottom() {
    window.scrollTo(0, document.documentElement.scrollHeight);
    this.newButton.hidden = true;
  }

  /** A batch from either transport.
   * @param {import("./chat-core.js").Batch} batch */
  show(batch) {
    const wasAtBottom = this.atBottom();
    const { fresh, gap } = this.timeline.take(batch);
    if (gap) {
      const line = document.createElement("div");
      line.className = "gap";
      line.textContent = "You may have missed messages while you were away.";
      this.inbox.append(line);
    }
    for (const message of fresh) {
      // The server rendered and escaped `html`; it is the only network data ever
      // parsed as HTML.
      const template = document.createElement("template");
      template.innerHTML = message.html;
      const node = template.content.firstElementChild;
      if (!node) continue;
      localizeTimes(node);
      if (message.kind === "message" && message.from === this.me) node.classList.add("mine");
      this.inbox.append(node);
      if (message.kind === "join" || message.kind === "leave") this.presence.apply(message);
    }
    if (batch.reset) this.presence.refresh();
    while (this.inbox.childElementCount > INBOX_LIMIT) this.inbox.firstElementChild.remove();
    if (!fresh.length) return;
    const { unread, mine } = tally(fresh, this.me);
    if (document.visibilityState === "hidden" && unread) this.setUnread(this.unread + unread);
    // Follow the room only when the reader is at the bottom (or just posted); someone
    // reading older messages is not pulled away from them.
    if (wasAtBottom || mine) this.scrollToBottom();
    else this.newButton.hidden = false;
  }
}

// Messages carry their time in UTC (<time datetime="...">HH:MM</time>); the reader sees it
// in their own time zone, with the full date on hover.
function localizeTimes(root) {
  for (const time of root.querySelectorAll("time[datetime]")) {
    const when = new Date(time.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    time.title = when.toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
  }
}

// ---- transports ---------------------------------------------------------------------

function socketUrl(cursor) {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  return `${scheme}${location.host}/a/message/socket?cursor=${encodeURIComponent(cursor)}`;
}

/** The WebSocket: connects, reconnects after a close as its code says, and carries posts
 * with their key as the nonce, so each post's own ack or error comes back to it. */
class SocketTransport {
  constructor(room, outbox) {
    this.room = room;
    this.outbox = outbox;
    this.socket = null;
  }

  /** Runs until the login is gone ("dead") or the socket keeps failing ("fallback").
   * `probe`: a socket already open (the upgrade's probe), used as the first connection. */
  async run(probe = null) {
    let failures = 0;
    for (;;) {
      this.room.setStatus("websocket", failures ? "reconnecting" : "connecting");
      const { code, openedFor } = await this.connectOnce(probe);
      probe = null;
      this.socket = null;
      // Posts still waiting for an answer go again, over HTTP until a socket is back.
      this.outbox.connectionLost();
      const next = afterClose(code);
      if (next === "dead" || (openedFor === 0 && (await loginIsGone()))) return "dead";
      if (next === "now") {
        failures = 0;
        continue;
      }
      failures = openedFor >= SOCKET_MIN_HEALTHY_MS ? 1 : failures + 1;
      if (failures >= SOCKET_FAILURES_BEFORE_FALLBACK) return "fallback";
      this.room.setStatus("websocket", "reconnecting");
      await waker.sleep(backoff(failures - 1));
    }
  }

  /** One connection, from open to close: resolves with the close code and how long it
   * was open (0: it never opened). With `probe` (the upgrade's socket, already open), that
   * one.
   * @param {Probe | null} probe */
  connectOnce(probe) {
    return new Promise((resolve) => {
      let socket;
      let openedAt = 0;
      const opened = () => {
        openedAt = Date.now();
        this.socket = socket;
        this.room.setStatus("websocket", "connected");
      };
      const closed = (code) => {
        resolve({ code, openedFor: openedAt ? Date.now() - openedAt : 0 });
      };
      if (probe) {
        socket = probe.socket;
        opened();
        socket.onmessage = (event) => this.receive(event.data);
        socket.onclose = (event) => closed(event.code);
        // What came before this transport took the socket over, in order.
        for (const data of probe.received) this.receive(data);
        if (probe.closedWith !== null) closed(probe.closedWith);
        return;
      }
      try {
        socket = new WebSocket(socketUrl(this.room.cursor));
      } catch {
        resolve({ code: 1006, openedFor: 0 });
        return;
      }
      socket.onopen = opened;
      socket.onmessage = (event) => this.receive(event.data);
      socket.onclose = (event) => closed(event.code);
    });
  }

  receive(raw) {
    let data;
    try {
      data = JSON.parse(raw);
    } catch {
      return;
    }
    if (data.ack !== undefined) {
      this.outbox.acked(data.ack);
    } else if (data.error !== undefined) {
      if (data.nonce !== undefined) this.outbox.refusedOverSocket(data.nonce);
      else this.room.showError(`Not sent: ${data.error}`);
    } else {
      this.room.show(data);
    }
  }

  /** Sends one post; false when no socket is open. */
  send(key, text) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify({ body: text, _xsrf: xsrfToken(this.room.form), nonce: key }));
    return true;
  }
}

/** HTTP long polling: one poll at a time, each from the cursor. */
class PollTransport {
  constructor(room) {
    this.room = room;
    this.stopped = false;
    this.controller = null;
  }

  /** Runs until stopped ("stopped") or the login is gone ("dead"). */
  async run() {
    let failures = 0;
    this.room.setStatus("longpoll", "connecting");
    while (!this.stopped) {
      let batch;
      try {
        const response = await this.poll();
        if (response.status === 403 && (await loginIsGone())) return "dead";
        if (!response.ok) throw new Error(`status ${response.status}`);
        batch = await response.json();
      } catch {
        if (this.stopped) break;
        failures += 1;
        this.room.setStatus("longpoll", failures >= FAILURES_BEFORE_OFFLINE ? "offline" : "reconnecting");
        await waker.sleep(backoff(failures - 1));
        continue;
      }
      if (this.stopped) break;
      failures = 0;
      this.room.setStatus("longpoll", "connected");
      // Outside the catch: a bug in showing a batch is a bug, not a lost connection.
      this.room.show(batch);
    }
    return "stopped";
  }

  poll() {
    const form = new URLSearchParams({ _xsrf: xsrfToken(this.room.form) });
    if (this.room.cursor) form.set("cursor", this.room.cursor);
    this.controller = new AbortController();
    return fetch("/a/message/updates", {
      method: "POST",
      body: form,
      credentials: "same-origin",
      headers: { "X-Xsrftoken": xsrfToken(this.room.form) },
      signal: this.controller.signal,
    });
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
  }
}

/** Every post from this page until the server has answered it: sent over the socket when
 * one is open, else over HTTP, and resent with its key until it is in or refused. */
class Outbox {
  constructor(room) {
    this.room = room;
    this.socket = null; // the SocketTransport while there is one
    // key -> { text, since, attempt, timer, state: "socket" (awaiting its ack) | "http"
    // (awaiting the answer) | "retrying" (to be sent again by its timer) }
    this.pending = new Map();
    // The network (or the store) is back: posts waiting for their next try go now.
    waker.onWake(() => {
      for (const [key, post] of this.pending) if (post.state === "retrying") this.send(key);
    });
    this.list = document.getElementById("outbox");
    this.watchingStore = false;
  }

  /** Posts waiting for their next try, shown under the inbox as pending. */
  render() {
    if (!this.list) return;
    const waiting = [...this.pending.values()].filter((post) => post.state === "retrying");
    this.list.replaceChildren(
      ...waiting.map((post) => {
        const item = document.createElement("li");
        const text = document.createElement("span");
        text.textContent = post.text;
        item.append(text, " \u2014 not sent yet, will retry by itself");
        return item;
      }),
    );
    this.list.hidden = waiting.length === 0;
  }

  /** The store refused a post (503): until /healthz says it answers again, the badge says
   * posts cannot go; then every waiting post goes at once, not at the end of its backoff. */
  async watchStore() {
    this.room.setStore("down");
    if (this.watchingStore) return;
    this.watchingStore = true;
    while (!this.room.dead) {
      await sleep(STORE_CHECK_MS);
      try {
        const response = await fetch("/healthz", { cache: "no-store" });
        if (response.ok) break;
      } catch {
        // Not reachable: the transports say so; keep asking.
      }
    }
    this.watchingStore = false;
    this.room.setStore("up");
    waker.wake();
  }

  submit(text) {
    const key = randomNonce();
    this.pending.set(key, { text, since: Date.now(), attempt: 0, timer: 0, state: "" });
    this.send(key);
  }

  send(key) {
    const post = this.pending.get(key);
    if (!post || this.room.dead) return;
    clearTimeout(post.timer);
    if (this.socket?.send(key, post.text)) {
      post.state = "socket";
      // No ack in time: maybe lost with the connection; the same key again is safe.
      post.timer = setTimeout(() => this.resendOverHttp(key), ACK_TIMEOUT_MS);
    } else {
      this.resendOverHttp(key);
    }
  }

  /** The post is in the room: the input clears only if it still holds that post. */
  acked(key) {
    const post = this.pending.get(key);
    if (!post) return;
    clearTimeout(post.timer);
    this.pending.delete(key);
    // It went in, so the store takes posts.
    this.room.setStore("up");
    if (this.room.input.value === post.text) this.room.input.value = "";
    if (!this.waiting()) this.room.showError("");
    this.render();
  }

  /** The post stored nothing and will not be resent; its text stays in the input. */
  refused(key, reason) {
    const post = this.pending.get(key);
    if (!post) return;
    clearTimeout(post.timer);
    this.pending.delete(key);
    this.room.showError(`Not sent: ${reason}`);
    this.render();
  }

  /** A socket's error frame does not say whether trying again can help; the same post
   * over HTTP does (its status), and stores nothing twice. */
  refusedOverSocket(key) {
    this.resendOverHttp(key);
  }

  /** Posts sent on the socket that closed may or may not be in: send them again. */
  connectionLost() {
    for (const [key, post] of this.pending) if (post.state === "socket") this.send(key);
  }

  waiting() {
    return [...this.pending.values()].some((post) => post.state === "retrying");
  }

  /** Follows `outcome` (see chat-core.js) for `key`: in, tried again after its wait, or
   * refused. */
  follow(key, outcome, reason) {
    const post = this.pending.get(key);
    if (!post) return;
    if (outcome.action === "done") {
      this.acked(key);
    } else if (outcome.action === "refuse") {
      this.refused(key, reason);
    } else {
      this.room.showError(`Not sent yet: ${reason}. It will be sent again by itself.`);
      clearTimeout(post.timer);
      post.state = "retrying";
      post.timer = setTimeout(() => this.send(key), outcome.waitMs);
      post.attempt += 1;
      this.render();
    }
  }

  async resendOverHttp(key) {
    const post = this.pending.get(key);
    if (!post || this.room.dead) return;
    clearTimeout(post.timer);
    post.state = "http";
    let response;
    try {
      response = await fetch("/a/message/new", {
        method: "POST",
        body: new URLSearchParams({ body: post.text, _xsrf: xsrfToken(this.room.form) }),
        credentials: "same-origin",
        headers: { "X-Xsrftoken": xsrfToken(this.room.form), "Idempotency-Key": key },
      });
    } catch {
      const outcome = afterFailure(backoff(post.attempt), Date.now() - post.since);
      this.follow(key, outcome, "the server cannot be reached");
      return;
    }
    if (response.ok) {
      this.acked(key);
      return;
    }
    if (response.status === 403 && (await loginIsGone())) {
      this.room.loggedOut();
      return;
    }
    const raw = await response.text().catch(() => "");
    let reason = raw;
    try {
      reason = JSON.parse(raw).error ?? raw;
    } catch {
      // Plain text.
    }
    reason ||= `status ${response.status}`;
    if (response.status === 503) this.watchStore();
    else this.room.setStore("up");
    const retryAfter = response.headers.get("Retry-After");
    const triedFor = Date.now() - post.since;
    this.follow(key, afterAnswer(response.status, retryAfter, post.attempt, triedFor), reason);
  }
}

// ---- the client ---------------------------------------------------------------------

/** Chooses the transport: the socket while it works, else long polling that now and then
 * tries the socket again. */
class Client {
  constructor(room) {
    this.room = room;
    this.outbox = new Outbox(room);
  }

  async run() {
    let useSocket = typeof WebSocket === "function";
    let probe = null;
    for (;;) {
      const outcome = useSocket ? await this.runSocket(probe) : await this.runPolls();
      if (outcome === "dead") {
        this.room.loggedOut();
        return;
      }
      // An upgrade hands over the probe that opened: one socket, not a second.
      probe = typeof outcome === "object" ? outcome : null;
      useSocket = probe !== null;
    }
  }

  async runSocket(probe = null) {
    this.outbox.socket = new SocketTransport(this.room, this.outbox);
    const outcome = await this.outbox.socket.run(probe);
    this.outbox.socket = null;
    return outcome;
  }

  /** Long polls until the login is gone, or a probe socket opens (the `Probe`). */
  async runPolls() {
    const polls = new PollTransport(this.room);
    const upgraded = this.waitForUpgrade(polls);
    const outcome = await polls.run();
    if (outcome === "dead") {
      polls.stop();
      return "dead";
    }
    return upgraded;
  }

  /** Where the browser has WebSocket, tries it again now and then; the poll stops only
   * once a socket actually opened, so there is never a moment with no transport. */
  async waitForUpgrade(polls) {
    if (typeof WebSocket !== "function") return new Promise(() => {});
    while (!polls.stopped) {
      await sleep(UPGRADE_RETRY_MS);
      if (polls.stopped) break;
      const probe = await new Promise((resolve) => {
        let socket;
        try {
          socket = new WebSocket(socketUrl(this.room.cursor));
        } catch {
          resolve(null);
          return;
        }
        socket.onopen = () => {
          // Kept until the socket transport takes it over; messages that come before
          // then wait in `received` (any the polls also showed are skipped by id).
          const opened = { socket, received: [], closedWith: null };
          socket.onmessage = (event) => opened.received.push(event.data);
          socket.onclose = (event) => {
            opened.closedWith = event.code;
          };
          resolve(opened);
        };
        socket.onclose = () => resolve(null);
      });
      if (probe) {
        polls.stop();
        return probe;
      }
    }
    return "stopped";
  }

  send(text) {
    if (this.room.dead) return;
    this.room.showError("");
    this.outbox.submit(text);
  }
}

const room = new Room();
const client = new Client(room);
room.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = room.input.value;
  if (text.trim()) client.send(text);
});
client.run().catch((error) => {
  // A bug, not the network: say so rather than retry forever.
  room.showError(`The page stopped on an error: ${error?.message ?? error}. Reload to go on.`);
  throw error;
});

