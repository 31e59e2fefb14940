// chatdemo client: keeps #inbox up to date over a WebSocket when the browser has one and it
// connects, else over HTTP long polling, and posts through the same channel. Every
// (re)connection resumes from the cursor (the id of the newest message shown), and
// messages are deduplicated by id, so switching transports loses and repeats nothing.
(function () {
  "use strict";

  var inbox = document.getElementById("inbox");
  var form = document.getElementById("messageform");
  var input = document.getElementById("message");
  var statusBox = document.getElementById("status");
  var errorBox = document.getElementById("error");
  var userName = (document.getElementById("user") || {}).textContent || "";
  if (!inbox || !form) return;

  // The origin cursor the page was rendered with (used until a message is shown).
  var pageCursor = inbox.getAttribute("data-cursor") || "";

  var BACKOFF_BASE_MS = 500;
  var BACKOFF_CAP_MS = 30000;
  // A socket that fails this many times in a row gives way to long polling ...
  var SOCKET_FAILURES_BEFORE_FALLBACK = 3;
  // ... and is tried again after this long.
  var UPGRADE_RETRY_MS = 60000;
  // A socket that lived less than this counts as failed ("keeps dropping").
  var SOCKET_MIN_HEALTHY_MS = 5000;
  // Long polls that fail this many times in a row show "offline".
  var FAILURES_BEFORE_OFFLINE = 4;

  // ---- shared state -------------------------------------------------------------------

  function cursor() {
    var last = inbox.lastElementChild;
    return last && last.id ? last.id.slice(1) : pageCursor;
  }

  function xsrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    if (match) return decodeURIComponent(match[1]);
    var field = form.querySelector("input[name=_xsrf]");
    return field ? field.value : "";
  }

  // Delay before retry number `attempt` (0-based): exponential, capped, half of it random
  // so that a room full of clients does not reconnect in lockstep after a restart.
  function backoff(attempt) {
    var ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
    return ceiling / 2 + Math.random() * ceiling / 2;
  }

  function setStatus(transport, state) {
    statusBox.setAttribute("data-transport", transport);
    statusBox.setAttribute("data-state", state);
    var name = transport === "websocket" ? "WebSocket" : transport === "longpoll" ? "Long polling" : "";
    statusBox.textContent = (name ? name + " \u00b7 " : "") + state;
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  // Messages carry their time in UTC (<time datetime="...">HH:MM</time>); the reader sees
  // it in their own time zone, with the full date on hover.
  function localizeTimes(root) {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (isNaN(when.getTime())) continue;
      times[i].textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      times[i].title = when.toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
    }
  }

  // ---- who is online -----------------------------------------------------------------

  var presenceBox = document.getElementById("presence");
  var onlineList = document.getElementById("online");
  var onlineCount = document.getElementById("online-count");
  // Folded away behind the count on a narrow screen.
  if (presenceBox && window.matchMedia && window.matchMedia("(max-width: 40em)").matches) {
    presenceBox.open = false;
  }

  function showOnline(names) {
    if (!onlineList) return;
    while (onlineList.firstChild) onlineList.removeChild(onlineList.firstChild);
    for (var i = 0; i < names.length; i++) {
      var item = document.createElement("li");
      item.textContent = names[i];
      onlineList.appendChild(item);
    }
    onlineCount.textContent = String(names.length);
  }

  function onlineNames() {
    var names = [];
    if (!onlineList) return names;
    for (var i = 0; i < onlineList.children.length; i++) names.push(onlineList.children[i].textContent);
    return names;
  }

  // A join adds its name at the end (newest last), a leave removes one row of that name
  // (two logins may share a name: each has its row).
  function applyNotice(message) {
    if (!onlineList) return;
    var names = onlineNames();
    if (message.kind === "join") names.push(message.from);
    if (message.kind === "leave") {
      var at = names.indexOf(message.from);
      if (at >= 0) names.splice(at, 1);
    }
    showOnline(names);
  }

  // The whole list again, after anything that may have made the notices miss a change.
  function refreshOnline() {
    if (!onlineList || typeof window.fetch !== "function") return;
    fetch("/a/presence", { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("status " + response.status);
      return response.json();
    }).then(function (data) {
      showOnline((data.users || []).map(function (user) { return user.name; }));
    }, function () {});
  }

  // Inserts messages from the server, oldest first. Their `html` was rendered and escaped
  // by the server; it is the only network data that is ever parsed as HTML.
  function showMessages(messages) {
    for (var i = 0; i < messages.length; i++) {
      var message = messages[i];
      if (document.getElementById("m" + message.id)) continue;
      var template = document.createElement("template");
      template.innerHTML = message.html;
      var node = template.content.firstElementChild;
      if (node) {
        localizeTimes(node);
        inbox.appendChild(node);
      }
      if (message.kind === "join" || message.kind === "leave") applyNotice(message);
      else confirmPending(message);
    }
    if (messages.length) window.scrollTo(0, document.body.scrollHeight);
  }

  function handleBatch(data) {
    if (data.reset) {
      showError("Some messages may have been missed while you were away.");
      refreshOnline();
    }
    showMessages(data.messages || []);
  }

  // Every (re)connection may have missed notices while it was down.
  var wasConnected = false;
  function connectedAgain() {
    if (!wasConnected) refreshOnline();
    wasConnected = true;
  }
  function disconnected() {
    wasConnected = false;
  }

  // ---- sending ------------------------------------------------------------------------

  // A message sent over the socket is confirmed when it comes back through the room.
  var pending = null;

  function confirmPending(message) {
    if (pending && message.from === userName && message.body === pending.text.trim()) {
      if (input.value === pending.text) input.value = "";
      clearTimeout(pending.timer);
      pending = null;
      setSending(false);
    }
  }

  function setSending(busy) {
    var button = form.querySelector("input[type=submit]");
    if (button) button.disabled = busy;
  }

  function sendOverHttp(text) {
    var body = new URLSearchParams();
    body.set("body", text);
    body.set("_xsrf", xsrfToken());
    setSending(true);
    fetch("/a/message/new", {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-Xsrftoken": xsrfToken() }
    }).then(function (response) {
      if (response.ok) {
        if (input.value === text) input.value = "";
        showError("");
        return;
      }
      return response.text().then(function (raw) {
        var reason = raw;
        try { reason = JSON.parse(raw).error || raw; } catch (e) { /* plain text */ }
        showError("Not sent: " + (reason || response.status));
      });
    }, function () {
      showError("Not sent: the server cannot be reached.");
    }).then(function () { setSending(false); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    if (!text.trim() || pending) return;
    showError("");
    if (transport.sendText && transport.sendText(text)) {
      setSending(true);
      pending = {
        text: text,
        timer: setTimeout(function () {
          pending = null;
          setSending(false);
          showError("Not confirmed yet; it may still arrive.");
        }, 10000)
      };
    } else {
      sendOverHttp(text);
    }
  });

  // ---- transports ---------------------------------------------------------------------

  var transport = { sendText: null };
  var socketFailures = 0;

  function start() {
    if (typeof window.WebSocket === "function" && socketFailures < SOCKET_FAILURES_BEFORE_FALLBACK) {
      openSocket();
    } else {
      startLongPoll();
    }
  }

  function openSocket() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + "/a/message/socket?cursor=" + encodeURIComponent(cursor());
    var socket;
    try {
      socket = new WebSocket(url);
    } catch (e) {
      socketFailures = SOCKET_FAILURES_BEFORE_FALLBACK;
      return start();
    }
    var openedAt = 0;
    setStatus("websocket", socketFailures ? "reconnecting" : "connecting");
    socket.onopen = function () {
      openedAt = Date.now();
      setStatus("websocket", "connected");
      disconnected();
      connectedAgain();
      transport = {
        sendText: function (text) {
          if (socket.readyState !== WebSocket.OPEN) return false;
          socket.send(JSON.stringify({ body: text, _xsrf: xsrfToken() }));
          return true;
        }
      };
    };
    socket.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (data.error) {
        showError("Not sent: " + data.error);
        if (pending) { clearTimeout(pending.timer); pending = null; setSending(false); }
        return;
      }
      handleBatch(data);
    };
    socket.onclose = function () {
      transport = { sendText: null };
      var healthy = openedAt && Date.now() - openedAt >= SOCKET_MIN_HEALTHY_MS;
      socketFailures = healthy ? 1 : socketFailures + 1;
      if (socketFailures >= SOCKET_FAILURES_BEFORE_FALLBACK) {
        startLongPoll();
        return;
      }
      setStatus("websocket", "reconnecting");
      setTimeout(openSocket, backoff(socketFailures - 1));
    };
  }

  function startLongPoll() {
    var failures = 0;
    var stopped = false;
    var controller = null;
    setStatus("longpoll", "connecting");
    transport = { sendText: null };

    function poll() {
      if (stopped) return;
      var body = new URLSearchParams();
      body.set("_xsrf", xsrfToken());
      var current = cursor();
      if (current) body.set("cursor", current);
      controller = typeof AbortController === "function" ? new AbortController() : null;
      fetch("/a/message/updates", {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-Xsrftoken": xsrfToken() },
        signal: controller ? controller.signal : undefined
      }).then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      }).then(function (data) {
        if (stopped) return;
        failures = 0;
        setStatus("longpoll", "connected");
        connectedAgain();
        handleBatch(data);
        poll();
      }, function () {
        if (stopped) return;
        failures++;
        setStatus("longpoll", failures >= FAILURES_BEFORE_OFFLINE ? "offline" : "reconnecting");
        disconnected();
        setTimeout(poll, backoff(failures - 1));
      });
    }

    // Where the browser has WebSocket, try it again now and then; the poll stops only
    // once a socket is actually open, so there is never a moment with no transport.
    function tryUpgrade() {
      if (stopped || typeof window.WebSocket !== "function") return;
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      var probe;
      try {
        probe = new WebSocket(scheme + location.host + "/a/message/socket?cursor=" + encodeURIComponent(cursor()));
      } catch (e) {
        return setTimeout(tryUpgrade, UPGRADE_RETRY_MS);
      }
      probe.onopen = function () {
        probe.onclose = null;
        probe.close(1000, "upgrading");
        stopped = true;
        if (controller) controller.abort();
        socketFailures = 0;
        openSocket();
      };
      probe.onclose = function () { setTimeout(tryUpgrade, UPGRADE_RETRY_MS); };
    }

    poll();
    setTimeout(tryUpgrade, UPGRADE_RETRY_MS);
  }

  localizeTimes(inbox);
  start();
})();
