#!/usr/bin/python3
"""Drives a headless Chromium through the DevTools protocol, line by line on stdin, for
mininet/websocket_test.py. Runs in the browser's Mininet host (DevTools listens on that host's
127.0.0.1), with Debian's python3-websocket.

It attaches to the browser's first page target, enables the Page, Runtime and Network domains and
writes every event it receives as one JSON line to --events (console messages, exceptions, and
Network.webSocket*: the browser's own view of the handshake and of each frame). Commands:

- `navigate URL`: loads URL, answers `LOADED` once Page.loadEventFired arrived;
- `eval EXPRESSION`: Runtime.evaluate (promises awaited, value returned by value), answers
  `RESULT <the value as JSON>` or `ERROR <the exception>`;
- `screenshot PATH`: Page.captureScreenshot as PNG into PATH, answers `SCREENSHOT <bytes>`;
- `quit`.

A command that gets no answer within --timeout seconds answers `ERROR timeout`.
"""

import argparse
import base64
import json
import queue
import sys
import threading
import time
import urllib.request

import websocket  # python3-websocket


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class DevTools:
    def __init__(self, port, events_path, timeout):
        self.timeout = timeout
        target = self._page_target(port)
        # No Origin header: Chromium (111 on) refuses DevTools connections from an origin it
        # was not told to allow with --remote-allow-origins.
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout,
                                              suppress_origin=True)
        self.ws.settimeout(None)
        self.events = open(events_path, "a")
        self.next_id = 0
        self.pending = {}
        self.lock = threading.Lock()
        self.loaded = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    @staticmethod
    def _page_target(port):
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port,
                                            timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages:
                    return pages[0]
            except OSError as e:
                last = e
            time.sleep(0.2)
        raise RuntimeError("no DevTools page target on port %d (%s)" % (port, last))

    def _pump(self):
        while True:
            try:
                raw = self.ws.recv()
            except Exception as e:  # the browser went away
                self.events.write(json.dumps({"method": "cdp.closed", "params": str(e)}) + "\n")
                self.events.flush()
                for q in list(self.pending.values()):
                    q.put({"error": {"message": "DevTools connection closed: %s" % e}})
                return
            msg = json.loads(raw)
            if "id" in msg:
                with self.lock:
                    q = self.pending.pop(msg["id"], None)
                if q is not None:
                    q.put(msg)
                continue
            if msg.get("method") == "Page.loadEventFired":
                self.loaded.set()
            self.events.write(json.dumps(msg) + "\n")
            self.events.flush()

    def call(self, method, **params):
        q = queue.Queue()
        with self.lock:
            self.next_id += 1
            mid = self.next_id
            self.pending[mid] = q
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        try:
            msg = q.get(timeout=self.timeout)
        except queue.Empty:
            raise RuntimeError("timeout: no answer to %s within %ss" % (method, self.timeout))
        if "error" in msg:
            raise RuntimeError("%s: %s" % (method, msg["error"].get("message")))
        return msg.get("result", {})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True, help="Chromium's --remote-debugging-port")
    ap.add_argument("--events", required=True, help="file the events are appended to")
    ap.add_argument("--timeout", type=float, default=20)
    a = ap.parse_args()
    try:
        dt = DevTools(a.port, a.events, a.timeout)
        for domain in ("Page", "Runtime", "Network"):
            dt.call(domain + ".enable")
    except Exception as e:
        out("ERROR %s" % e)
        return 1
    out("READY")
    for line in sys.stdin:
        command, _, arg = line.rstrip("\n").partition(" ")
        try:
            if command == "navigate":
                dt.loaded.clear()
                dt.call("Page.navigate", url=arg)
                if not dt.loaded.wait(a.timeout):
                    raise RuntimeError("timeout: %s did not load within %ss" % (arg, a.timeout))
                out("LOADED")
            elif command == "eval":
                r = dt.call("Runtime.evaluate", expression=arg, returnByValue=True,
                            awaitPromise=True)
                if "exceptionDetails" in r:
                    details = r["exceptionDetails"]
                    text = details.get("exception", {}).get("description") or details.get("text")
                    out("ERROR %s" % json.dumps(text))
                else:
                    out("RESULT %s" % json.dumps(r["result"].get("value")))
            elif command == "screenshot":
                r = dt.call("Page.captureScreenshot", format="png")
                data = base64.b64decode(r["data"])
                with open(arg, "wb") as f:
                    f.write(data)
                out("SCREENSHOT %d" % len(data))
            elif command == "quit":
                break
            elif command:
                out("ERROR unknown command %r" % command)
        except Exception as e:
            out("ERROR %s" % json.dumps(str(e)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
