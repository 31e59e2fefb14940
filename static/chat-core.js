// @ts-check
// The chat client's core: what the page decides, without the page. No DOM, no network:
// the cursor and deduplication of entries, who is online (folded notices), the retry
// rules for posts and connections, the unread title. `chat.js` (the boot module) wires it
// to the document and the transports; tests/js runs it under Node's test runner.

/**
 * An entry of the room as the server sends it (docs/PROTOCOL.md, "Messages").
 * @typedef {object} Message
 * @property {string} id
 * @property {string} from
 * @property {string} body
 * @property {string} html
 * @property {string} time
 * @property {"message" | "join" | "leave"} kind
 * @property {string[]} [names] notices: the first names, up to 20
 * @property {number} [count] notices: how many in all
 */

/**
 * What either transport delivers: entries after the cursor, oldest first; `reset` when
 * the cursor was not known (entries may have been missed).
 * @typedef {object} Batch
 * @property {Message[]} [messages]
 * @property {boolean} [reset]
 */

/**
 * `GET /a/presence`.
 * @typedef {object} PresenceList
 * @property {number} count
 * @property {{name: string, since: string}[]} users
 */

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30000;
// How long a post is resent before the sender is told it was not sent. The server
// remembers a post's key for 10 minutes, so every resend within this is safe.
export const RESEND_FOR_MS = 5 * 60 * 1000;
// Close codes with a meaning for the client (see docs/PROTOCOL.md).
const CLOSE_POLICY = 1008; // bad _xsrf, or the login was ended: a dead end
const CLOSE_TRY_AGAIN = 1013; // too slow: come back at once with the cursor
// Names the page lists (the server embeds as many).
export const ROSTER_CAP = 100;

/** Delay before retry number `attempt` (0-based): doubling, capped, the upper half random,
 * so a room full of clients does not reconnect in lockstep after a restart.
 * @param {number} attempt
 * @param {() => number} [random]
 * @returns {number} milliseconds */
export function backoff(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return ceiling / 2 + (random() * ceiling) / 2;
}

/** What a socket closed with `code` should do: "dead" (the login is gone), "now"
 * (reconnect at once) or "later" (reconnect after a backoff).
 * @param {number} code
 * @returns {"dead" | "now" | "later"} */
export function afterClose(code) {
  if (code === CLOSE_POLICY) return "dead";
  if (code === CLOSE_TRY_AGAIN) return "now";
  return "later";
}

/**
 * What to do with a post after the server's answer to it over HTTP.
 * @typedef {{action: "done"} | {action: "retry", waitMs: number} | {action: "refuse"}} PostOutcome
 */

/** The rule for a post's HTTP answer: 2xx is in; busy, over the rate, the store away or
 * the body cut off stored nothing and may go in later (after `Retry-After` when given),
 * unless the post has been tried for [`RESEND_FOR_MS`]; anything else is refused.
 * @param {number} status
 * @param {string | null} retryAfter the header, in seconds
 * @param {number} attempt tries so far
 * @param {number} triedForMs since the post was first sent
 * @param {() => number} [random]
 * @returns {PostOutcome} */
export function afterAnswer(status, retryAfter, attempt, triedForMs, random = Math.random) {
  if (status >= 200 && status < 300) return { action: "done" };
  if (![408, 429, 502, 503, 504].includes(status)) return { action: "refuse" };
  const seconds = Number(retryAfter);
  const waitMs = seconds > 0 ? seconds * 1000 : backoff(attempt, random);
  return afterFailure(waitMs, triedForMs);
}

/** A post that could not be sent (no answer, or one that says later): again after
 * `waitMs`, unless that is past the resend window.
 * @param {number} waitMs
 * @param {number} triedForMs
 * @returns {PostOutcome} */
export function afterFailure(waitMs, triedForMs) {
  if (triedForMs + waitMs > RESEND_FOR_MS) return { action: "refuse" };
  return { action: "retry", waitMs };
}

/** The page's place in the room: the cursor (the newest entry seen) and which entries are
 * new. Entries are deduplicated by id, so a batch that repeats some (a resumed socket, a
 * poll racing an upgrade) shows each once. */
export class Timeline {
  /** @param {string} cursor @param {(id: string) => boolean} shown */
  constructor(cursor, shown) {
    this.cursor = cursor;
    this.shown = shown;
  }

  /** The entries of `batch` to show, in order, and whether to say first that some may
   * have been missed (a `reset` with anything new). Moves the cursor to the batch's last.
   * @param {Batch} batch
   * @returns {{fresh: Message[], gap: boolean}} */
  take(batch) {
    const fresh = [];
    const seen = new Set();
    for (const message of batch.messages ?? []) {
      this.cursor = message.id;
      if (seen.has(message.id) || this.shown(message.id)) continue;
      seen.add(message.id);
      fresh.push(message);
    }
    return { fresh, gap: Boolean(batch.reset) && fresh.length > 0 };
  }
}

/** Who is online as the page knows it: the first names (at most `cap`, oldest first)
 * and the whole count. Notices may be folded: `names` holds the first 20 of them and
 * `count` all of them, so the count stays exact while the names may fall behind; a
 * notice that names fewer than it counts asks for a lazy refresh of the list. */
export class Roster {
  /** @param {string[]} names @param {number} count @param {number} [cap] */
  constructor(names, count, cap = ROSTER_CAP) {
    this.cap = cap;
    this.names = names.slice(0, cap);
    this.count = Math.max(count, this.names.length);
  }

  /** @param {PresenceList} list */
  static of(list) {
    const names = (list.users ?? []).map((user) => user.name);
    return new Roster(names, list.count ?? names.length);
  }

  /** Applies a `join` or `leave` notice; true when it named fewer than it counted.
   * @param {Message} notice
   * @returns {boolean} */
  apply(notice) {
    const names = notice.names ?? [notice.from];
    const count = notice.count ?? names.length;
    if (notice.kind === "join") {
      for (const name of names) if (this.names.length < this.cap) this.names.push(name);
      this.count += count;
    } else if (notice.kind === "leave") {
      // Two logins may share a name: each has its row, and a leave removes one.
      for (const name of names) {
        const at = this.names.indexOf(name);
        if (at >= 0) this.names.splice(at, 1);
      }
      this.count = Math.max(0, this.count - count);
      if (this.names.length > this.count) this.names.length = this.count;
    }
    return count > names.length;
  }

  /** How many are online beyond the names shown. */
  more() {
    return Math.max(0, this.count - this.names.length);
  }
}

/** Posts the reader has not seen, counted while the page is hidden.
 * @param {Message[]} fresh
 * @param {string} me the reader's name
 * @returns {{unread: number, mine: boolean}} how many are others' posts, and whether one
 *   is the reader's own */
export function tally(fresh, me) {
  let unread = 0;
  let mine = false;
  for (const message of fresh) {
    if (message.kind !== "message") continue;
    if (message.from === me) mine = true;
    else unread += 1;
  }
  return { unread, mine };
}

/** The tab's title with `unread` in front, or as it was.
 * @param {string} title @param {number} unread */
export function titled(title, unread) {
  return unread ? `(${unread}) ${title}` : title;
}

/** Waits that end early when there is news: the network came back (`online`) or a hidden
 * tab was shown again. A page that waited out its backoff would sit on a stale
 * "reconnecting" for up to 30 s after the network returned. */
export class Waker {
  constructor() {
    /** @type {Set<() => void>} */
    this.sleepers = new Set();
    /** @type {Set<() => void>} */
    this.listeners = new Set();
  }

  /** Resolves after `ms`, or at the next wake, whichever comes first.
   * @param {number} ms
   * @returns {Promise<void>} */
  sleep(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  /** Calls `listener` at every wake. @param {() => void} listener */
  onWake(listener) {
    this.listeners.add(listener);
  }

  wake() {
    for (const done of [...this.sleepers]) done();
    for (const listener of this.listeners) listener();
  }
}
