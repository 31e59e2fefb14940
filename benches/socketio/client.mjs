// One lean Node client for both servers, so neither is judged by a different client:
// N WebSockets (the `ws` package, nothing else) spread over W worker threads, a poster on
// its own socket sending M messages at R a second on a fixed schedule, and every receiver
// checking that it got every message once, in order. Latency is from each message's
// scheduled time to its arrival (one clock: `performance.timeOrigin` + `now()`); the
// server's CPU is read from /proc before and after.
//
// One thread would be the limit: it reads a fan-out's 2,000 frames one after another
// (about 14 µs each), so a message's median latency would be half of that, whichever the
// server. `--workers` spreads the sockets (1 reproduces the single-threaded client).
//
//   node client.mjs --proto chatdemo|socketio --url http://127.0.0.1:PORT --pid PID
//        --sockets 2000 --messages 200 --rate 20 [--workers 2] [--label NAME] [--json FILE]
import { appendFileSync, readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import WebSocket from "ws";

const args = isMainThread
  ? Object.fromEntries(
      process.argv.slice(2).reduce((pairs, arg, i, all) => {
        if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
        return pairs;
      }, []),
    )
  : workerData.args;
const proto = args.proto;
const base = new URL(args.url);
const sockets = Number(args.sockets ?? 2000);
const messages = Number(args.messages ?? 200);
const rate = Number(args.rate ?? 20);
const pid = Number(args.pid);
const label = args.label ?? proto;
// chatdemo lets one login hold 64 sockets; these share a login 50 at a time.
const SOCKETS_PER_LOGIN = 50;
const workers = Number(args.workers ?? 2);
const run = isMainThread ? Math.random().toString(36).slice(2, 8) : workerData.run;
/** Now, in ms, on the one clock every thread shares. */
const clock = () => performance.timeOrigin + performance.now();

const TICKS = 100; // clock ticks per second in /proc/<pid>/stat
function cpuSeconds(process) {
  const fields = readFileSync(`/proc/${process}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}
function rssKiB(process) {
  const line = readFileSync(`/proc/${process}/status`, "utf8").match(/VmRSS:\s+(\d+)/);
  return Number(line[1]);
}

// ---- chatdemo ----------------------------------------------------------------------------

async function chatdemoLogin(name) {
  const response = await fetch(new URL(`/auth/login?name=${name}`, base), { redirect: "manual" });
  const cookies = response.headers.getSetCookie().map((c) => c.split(";")[0]);
  const xsrf = cookies.find((c) => c.startsWith("_xsrf="))?.slice(6);
  return { cookie: cookies.join("; "), xsrf: decodeURIComponent(xsrf ?? "") };
}

function chatdemoSocket(login, onMessage) {
  const url = new URL("/a/message/socket", base);
  url.protocol = "ws:";
  const ws = new WebSocket(url, { headers: { Cookie: login.cookie, Origin: base.origin } });
  ws.on("message", (data) => {
    const frame = JSON.parse(data.toString());
    for (const message of frame.messages ?? []) onMessage(message.body);
  });
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

async function chatdemoPoster() {
  const login = await chatdemoLogin(`poster-${run}`);
  const ws = await chatdemoSocket(login, () => {});
  let nonce = 0;
  return (body) => ws.send(JSON.stringify({ body, _xsrf: login.xsrf, nonce: `${run}-${nonce++}` }));
}

// ---- Socket.IO (engine.io v4 over a raw WebSocket) -------------------------------------

function socketioSocket(name, onMessage) {
  const url = new URL(`/socket.io/?EIO=4&transport=websocket&name=${name}`, base);
  url.protocol = "ws:";
  const ws = new WebSocket(url);
  return new Promise((resolve, reject) => {
    ws.on("message", (data) => {
      const text = data.toString();
      if (text.startsWith("0")) ws.send("40"); // open: join the default namespace
      else if (text === "2") ws.send("3"); // ping: pong
      else if (text.startsWith("40")) resolve(ws); // connected
      else if (text.startsWith("42")) {
        const [event, message] = JSON.parse(text.slice(2));
        if (event === "chat message") onMessage(message.body);
      }
    });
    ws.once("error", reject);
  });
}

async function socketioPoster() {
  const ws = await socketioSocket(`poster-${run}`, () => {});
  return (body) => ws.send(`42${JSON.stringify(["chat message", body])}`);
}

// ---- the receivers (each worker) ---------------------------------------------------------

/** Opens sockets `first..last` and counts what they receive until told the posting is over
 * and everything came (or 30 s more passed). */
async function receive(first, last) {
  const count = last - first;
  const latencies = new Float64Array(count * messages);
  const next = new Int32Array(count);
  let problems = 0;
  let delivered = 0;
  const receiver = (i) => (body) => {
    const match = /^b:(\w+):(\d+):([\d.]+)$/.exec(body ?? "");
    if (!match || match[1] !== run) return;
    const seq = Number(match[2]);
    if (seq !== next[i]) problems += 1; // lost, repeated or out of order
    next[i] = seq + 1;
    if (delivered < latencies.length) latencies[delivered] = clock() - Number(match[3]);
    delivered += 1;
  };
  const open = [];
  if (proto === "chatdemo") {
    for (let start = first; start < last; start += SOCKETS_PER_LOGIN) {
      const login = await chatdemoLogin(`b${run}x${start}`);
      const batch = [];
      for (let i = start; i < Math.min(last, start + SOCKETS_PER_LOGIN); i++) {
        batch.push(chatdemoSocket(login, receiver(i - first)));
      }
      open.push(...(await Promise.all(batch)));
    }
  } else {
    for (let start = first; start < last; start += 100) {
      const batch = [];
      for (let i = start; i < Math.min(last, start + 100); i++) {
        batch.push(socketioSocket(`b${i}`, receiver(i - first)));
      }
      open.push(...(await Promise.all(batch)));
    }
  }
  return {
    open: open.length,
    async finish(postedAt) {
      const deadline = postedAt + 30000;
      while (delivered < count * messages && clock() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      for (const ws of open) ws.terminate();
      return { delivered, problems, latencies: latencies.slice(0, Math.min(delivered, latencies.length)) };
    },
  };
}

if (!isMainThread) {
  const share = await receive(workerData.first, workerData.last);
  parentPort.postMessage({ open: share.open });
  parentPort.once("message", async ({ postedAt }) => {
    const result = await share.finish(postedAt);
    parentPort.postMessage(result, [result.latencies.buffer]);
  });
} else {
  await main();
}

// ---- the run (the main thread: the poster) ----------------------------------------------

async function main() {
  const connectStarted = performance.now();
  const threads = [];
  const ready = [];
  const per = Math.ceil(sockets / workers);
  for (let w = 0; w < workers; w++) {
    const first = w * per;
    const last = Math.min(sockets, first + per);
    if (first >= last) break;
    const thread = new Worker(new URL(import.meta.url), { workerData: { args, run, first, last } });
    threads.push(thread);
    ready.push(new Promise((resolve, reject) => {
      thread.once("message", resolve);
      thread.once("error", reject);
    }));
  }
  const opened = (await Promise.all(ready)).reduce((sum, r) => sum + r.open, 0);
  const post = proto === "chatdemo" ? await chatdemoPoster() : await socketioPoster();
  console.error(`[${label}] ${opened} sockets open in ${((performance.now() - connectStarted) / 1000).toFixed(1)} s over ${threads.length} threads`);
  await new Promise((resolve) => setTimeout(resolve, 1000));

  const rssBefore = rssKiB(pid);
  const cpuBefore = cpuSeconds(pid);
  const clientBefore = process.cpuUsage();
  const started = clock();
  for (let seq = 0; seq < messages; seq++) {
    const due = started + (seq * 1000) / rate;
    const wait = due - clock();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    post(`b:${run}:${seq}:${due.toFixed(3)}`);
  }
  const postedAt = clock();
  const results = await Promise.all(
    threads.map(
      (thread) =>
        new Promise((resolve) => {
          thread.once("message", resolve);
          thread.postMessage({ postedAt });
        }),
    ),
  );
  const cpu = cpuSeconds(pid) - cpuBefore;
  const client = process.cpuUsage(clientBefore);
  const delivered = results.reduce((sum, r) => sum + r.delivered, 0);
  const problems = results.reduce((sum, r) => sum + r.problems, 0);
  const latencies = Float64Array.from(results.flatMap((r) => Array.from(r.latencies))).sort();
  const expected = sockets * messages;
  const lost = expected - delivered;
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  const result = {
    label,
    proto,
    sockets,
    messages,
    rate,
    workers: threads.length,
    delivered,
    lost,
    problems,
    p50_ms: Number(at(0.5).toFixed(2)),
    p99_ms: Number(at(0.99).toFixed(2)),
    max_ms: Number((latencies.at(-1) ?? NaN).toFixed(2)),
    server_cpu_s: Number(cpu.toFixed(2)),
    cpu_per_delivery_us: Number(((cpu / Math.max(1, delivered)) * 1e6).toFixed(2)),
    client_cpu_s: Number(((client.user + client.system) / 1e6).toFixed(2)),
    server_rss_kib: rssKiB(pid),
    server_rss_before_kib: rssBefore,
  };
  console.error(
    `[${label}] delivered ${delivered}/${expected}, ${problems} out of order or repeated; ` +
      `p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms; server CPU ${result.server_cpu_s} s = ` +
      `${result.cpu_per_delivery_us} µs per delivery; client CPU ${result.client_cpu_s} s`,
  );
  if (args.json) appendFileSync(args.json, `${JSON.stringify(result)}\n`);
  for (const thread of threads) thread.terminate();
  process.exit(lost || problems ? 1 : 0);
}
