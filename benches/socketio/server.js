// The Socket.IO peer: the chat example from Socket.IO's docs ("chat message" events,
// `io.emit` to everyone), WebSocket transport only, each message shaped like chatdemo's
// (id, from, body, html, time, kind) so both do the same work per message.
//   node server.js PORT
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 18893);
const http = createServer();
const io = new Server(http, { transports: ["websocket"], serveClient: false });

const escape = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
let next = 0;

io.on("connection", (socket) => {
  const from = String(socket.handshake.query.name ?? "anon");
  socket.on("chat message", (body, ack) => {
    const id = `${Date.now()}-${next++}`;
    const time = new Date().toISOString();
    const html = `<div class="message" id="m${id}"><time datetime="${time}">${time.slice(11, 16)}</time> <b>${escape(from)}: </b>${escape(String(body))}</div>`;
    io.emit("chat message", { id, from, body: String(body), html, time, kind: "message" });
    if (typeof ack === "function") ack(id);
  });
});

http.listen(port, "127.0.0.1");
