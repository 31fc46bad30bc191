#!/usr/bin/env python3
"""Answers the lab host's questions about the guest: GET /check/<name> runs one fixed command
(no arguments from the request ever reach a shell) and returns JSON {rc, out, ms}.
GET /shutdown ends the guest. Listens on the guest's tap address only."""
import json, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

addr, port, checks_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
CHECKS = json.load(open(checks_file))   # name -> argv list


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/shutdown":
            self.reply(200, {"rc": 0, "out": "bye"})
            self.server.shutdown_requested = True
            return
        name = self.path.removeprefix("/check/")
        if name not in CHECKS:
            self.reply(404, {"rc": -1, "out": f"unknown check {name!r}"})
            return
        t0 = time.monotonic()
        try:
            p = subprocess.run(CHECKS[name], capture_output=True, text=True, timeout=20)
            rc, out = p.returncode, (p.stdout + p.stderr).strip()
        except subprocess.TimeoutExpired:
            rc, out = 124, "timed out"
        self.reply(200, {"rc": rc, "out": out, "ms": int((time.monotonic() - t0) * 1000)})

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer((addr, port), Handler)
server.shutdown_requested = False
server.timeout = 0.5
while not server.shutdown_requested:
    server.handle_request()
