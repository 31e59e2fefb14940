"""Tornado reference for the benchmark: the classic chatdemo (2011) protocol with a fake
login, plus a WebSocket route on the same cache, written the way the original is written
and deployed (plain Tornado idioms, debug off, one process).

Routes and shapes match the Rust server, so one load generator drives both:
  GET  /auth/login?name=...   signed `user` cookie + `_xsrf` cookie, 302 to /
  POST /a/message/new         body, _xsrf -> the message as JSON
  POST /a/message/updates     _xsrf, cursor -> {"messages": [...]} (held until there is one)
  GET  /a/message/socket      ?cursor= replay, then {"messages": [m]} per message; frames
                              {"body", "_xsrf"} post
Cursor rules: a cached cursor gets what came after it; an unknown one gets the whole cache
with "reset": true; no cursor waits for the next message.
"""

import asyncio
import json
import os
import uuid

import tornado.escape
import tornado.ioloop
import tornado.template
import tornado.web
import tornado.websocket
from tornado.options import define, options, parse_command_line

define("port", default=8891, help="port to listen on")
define("address", default="127.0.0.1", help="address to listen on")
define("cache_size", default=200, help="messages kept")
define("cookie_secret", default="bench-only-secret-" + "x" * 48, help="cookie key")

MESSAGE_TEMPLATE = tornado.template.Template(
    '<div class="message" id="m{{ message["id"] }}"><b>{{ message["from"] }}: </b>'
    '{% raw linkify(message["body"]) %}</div>'
)


class MessageBuffer:
    """The MessageMixin state: waiters (held polls), sockets and the cache."""

    def __init__(self, cache_size):
        self.waiters = set()
        self.sockets = set()
        self.cache = []
        self.cache_size = cache_size

    def messages_since(self, cursor):
        """(messages, reset): what a client at `cursor` gets now."""
        if not cursor:
            return [], False
        for index in range(len(self.cache) - 1, -1, -1):
            if self.cache[index]["id"] == cursor:
                return self.cache[index + 1:], False
        return list(self.cache), bool(self.cache)

    def new_message(self, message):
        self.cache.append(message)
        if len(self.cache) > self.cache_size:
            self.cache = self.cache[-self.cache_size:]
        waiters, self.waiters = self.waiters, set()
        for future in waiters:
            if not future.done():
                future.set_result([message])
        for socket in list(self.sockets):
            try:
                socket.write_message({"messages": [message]})
            except tornado.websocket.WebSocketClosedError:
                self.sockets.discard(socket)


BUFFER = None


def make_message(handler, body):
    message = {
        "id": str(uuid.uuid4()),
        "from": handler.current_user["name"],
        "body": body,
    }
    message["html"] = tornado.escape.to_unicode(MESSAGE_TEMPLATE.generate(message=message))
    return message


class BaseHandler(tornado.web.RequestHandler):
    def get_current_user(self):
        user = self.get_signed_cookie("user")
        return json.loads(user) if user else None


class LoginHandler(BaseHandler):
    def get(self):
        name = self.get_argument("name", None) or "guest-%06d" % (uuid.uuid4().int % 1000000)
        self.set_signed_cookie("user", json.dumps({"name": name}))
        self.xsrf_token  # sets the _xsrf cookie
        self.redirect("/")


class MainHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self):
        self.write("".join(m["html"] for m in BUFFER.cache))


class MessageNewHandler(BaseHandler):
    @tornado.web.authenticated
    def post(self):
        body = self.get_argument("body").strip()
        if not body:
            raise tornado.web.HTTPError(400)
        message = make_message(self, body)
        self.write(message)
        BUFFER.new_message(message)


class MessageUpdatesHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self):
        messages, reset = BUFFER.messages_since(self.get_argument("cursor", None))
        if not messages:
            self.future = asyncio.get_running_loop().create_future()
            BUFFER.waiters.add(self.future)
            messages = await self.future
            reset = False
        if self.request.connection.stream.closed():
            return
        answer = {"messages": messages}
        if reset:
            answer["reset"] = True
        self.finish(answer)

    def on_connection_close(self):
        future = getattr(self, "future", None)
        if future is not None:
            BUFFER.waiters.discard(future)
            if not future.done():
                future.set_result([])


class SocketHandler(tornado.websocket.WebSocketHandler):
    def get_current_user(self):
        user = self.get_signed_cookie("user")
        return json.loads(user) if user else None

    def get(self, *args, **kwargs):
        if not self.current_user:
            raise tornado.web.HTTPError(403)
        return super().get(*args, **kwargs)

    def open(self):
        messages, reset = BUFFER.messages_since(self.get_argument("cursor", None))
        BUFFER.sockets.add(self)
        if messages:
            answer = {"messages": messages}
            if reset:
                answer["reset"] = True
            self.write_message(answer)

    def on_message(self, frame):
        parsed = tornado.escape.json_decode(frame)
        body = str(parsed["body"]).strip()
        if body:
            BUFFER.new_message(make_message(self, body))

    def on_close(self):
        BUFFER.sockets.discard(self)


def main():
    global BUFFER
    parse_command_line()
    BUFFER = MessageBuffer(options.cache_size)
    app = tornado.web.Application(
        [
            (r"/", MainHandler),
            (r"/auth/login", LoginHandler),
            (r"/a/message/new", MessageNewHandler),
            (r"/a/message/updates", MessageUpdatesHandler),
            (r"/a/message/socket", SocketHandler),
        ],
        cookie_secret=options.cookie_secret,
        login_url="/auth/login",
        xsrf_cookies=True,
        debug=False,
    )

    async def serve():
        app.listen(options.port, address=options.address)
        print("tornado listening port=%d" % options.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
