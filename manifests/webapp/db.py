#!/usr/bin/env python3
"""A tiny key-value server for the webapp example: one line in, one line out, over TCP.

    GET <key>          -> the value, or an empty line
    INCR <key>         -> the new value (a counter)
    SET <key> <value>  -> OK

It listens on 0.0.0.0:6379 inside the instance; `web` reaches it over the Golem VPN as
`db:6379` (the name comes from the instance's /etc/hosts). Runs on Python >= 3.8.
"""

import socketserver
import sys
import threading

DATA = {"greeting": "hello from db"}
LOCK = threading.Lock()


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for raw in self.rfile:
            words = raw.decode("utf-8", "replace").split(maxsplit=2)
            with LOCK:
                if len(words) == 2 and words[0] == "GET":
                    answer = DATA.get(words[1], "")
                elif len(words) == 2 and words[0] == "INCR":
                    answer = str(int(DATA.get(words[1], "0")) + 1)
                    DATA[words[1]] = answer
                elif len(words) == 3 and words[0] == "SET":
                    DATA[words[1]] = words[2].strip()
                    answer = "OK"
                else:
                    answer = "ERR expected GET key, INCR key or SET key value"
            self.wfile.write(answer.encode() + b"\n")
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
    with Server(("0.0.0.0", port), Handler) as server:
        print(f"db listening on port {port}", flush=True)
        server.serve_forever()
