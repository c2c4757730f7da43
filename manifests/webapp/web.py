#!/usr/bin/env python3
"""The web tier of the webapp example: HTTP on port 8000, data from `db` over the Golem VPN.

    GET /         -> JSON: db's greeting, a visit counter kept by db, and which instance
                     answered (its own address in the VPN)
    GET /health   -> 200 "ok" when db answers, 503 otherwise

Every request opens a TCP connection to $DB_HOST:$DB_PORT (default db:6379), a name the
instance resolves through its /etc/hosts. Runs on Python >= 3.8.
"""

import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DB = (os.environ.get("DB_HOST", "db"), int(os.environ.get("DB_PORT", "6379")))


def ask_db(*commands: str) -> tuple:
    """db's answers, and our own VPN address (the local end of the connection to db)."""
    with socket.create_connection(DB, timeout=5) as conn:
        reader = conn.makefile("rb")
        answers = []
        for command in commands:
            conn.sendall(command.encode() + b"\n")
            answers.append(reader.readline().decode().strip())
        return answers, conn.getsockname()[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, every answer says its length

    def do_GET(self) -> None:
        health = self.path == "/health"
        try:
            answers, me = ask_db("GET greeting") if health else ask_db("GET greeting", "INCR visits")
        except OSError as error:
            self.reply(503, {"error": f"db unreachable: {error}"})
            return
        if health:
            self.reply(200, {"status": "ok"})
        else:
            greeting, visits = answers
            self.reply(200, {"greeting": greeting, "visits": int(visits), "served_by": me})

    def reply(self, status: int, body: dict) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    print(f"web listening on port {port}, db at {DB[0]}:{DB[1]}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
