#!/usr/bin/env python3
"""A stand-in for Backlog's REST API v2 on 127.0.0.1: the two requests discovery makes.

It answers as Nulab's developer documentation describes them:
- GET /api/v2/projects?apiKey=KEY[&archived=false][&all=true]: a JSON array of projects
  (id, projectKey, name, archived); archived=false leaves archived projects out, archived=true
  keeps only them (get-project-list).
- GET /api/v2/projects/KEY/git/repositories?apiKey=KEY: a JSON array of repositories (id,
  projectId, name, httpUrl, sshUrl, ...) (get-list-of-git-repositories); an unknown project
  is 404 {"errors":[{"message":"No project.","code":6,"moreInfo":""}]} (error-response).
- a wrong apiKey is 401 with code 11 (AuthenticationError); every answer carries
  X-RateLimit-Limit/-Remaining/-Reset (rate-limit), and a request over the limit gets 429.

What it serves is read from a JSON file on every request, so a test changes the space between
runs by rewriting the file. Besides "key", "projects" and "repositories" (project key -> list),
the file may ask for faults, each counted per request:
- "rate_limit": N: the first N requests get 429, X-RateLimit-Reset one second ahead,
- "reset_in": seconds: the Reset of those 429s (default 1),
- "slow": seconds: sleep before every answer,
- "huge": true: every 200 answer is 9 MiB of JSON,
- "status": [code, body]: every request gets that status and body, where "{raw}" in the body
  becomes the request's path and query as sent and "{url}" the same decoded (apiKey included),
  as a careless server echoes it.

Every request's path and query (apiKey removed) is appended to --log, one line each, before it
is answered. The first line on stdout is "READY <port>".
"""

import argparse
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
COUNT = {"requests": 0}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def answer(self, status, body, headers=()):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            with open(args.config) as f:
                space = json.load(f)
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            shown = [f"{k}={v}" for k, vs in sorted(query.items()) for v in vs if k != "apiKey"]
            with LOCK:
                COUNT["requests"] += 1
                number = COUNT["requests"]
                with open(args.log, "a") as log:
                    log.write(url.path + ("?" + "&".join(shown) if shown else "") + "\n")
            if space.get("slow"):
                time.sleep(space["slow"])
            reset = int(time.time()) + int(space.get("reset_in", 1))
            limits = [
                ("X-RateLimit-Limit", "150"),
                ("X-RateLimit-Remaining", "0" if number <= space.get("rate_limit", 0) else "100"),
                ("X-RateLimit-Reset", str(reset)),
            ]
            if number <= space.get("rate_limit", 0):
                error = {"message": "Too many requests.", "code": 13, "moreInfo": ""}
                return self.answer(429, {"errors": [error]}, limits)
            if "status" in space:
                code, body = space["status"]
                body = body.replace("{raw}", self.path)
                body = body.replace("{url}", urllib.parse.unquote(self.path))
                return self.answer(code, body.encode(), limits)
            if query.get("apiKey") != [space["key"]]:
                error = {"message": "Authentication failure.", "code": 11, "moreInfo": ""}
                return self.answer(401, {"errors": [error]}, limits)
            parts = url.path.strip("/").split("/")
            if parts == ["api", "v2", "projects"]:
                archived = query.get("archived", [None])[0]
                projects = [
                    p for p in space.get("projects", [])
                    if archived is None or p.get("archived", False) == (archived == "true")
                ]
                body = projects
            elif len(parts) == 6 and parts[:3] == ["api", "v2", "projects"] and parts[4:] == ["git", "repositories"]:
                repos = space.get("repositories", {})
                if parts[3] not in repos:
                    error = {"message": "No project.", "code": 6, "moreInfo": ""}
                    return self.answer(404, {"errors": [error]}, limits)
                body = repos[parts[3]]
            else:
                return self.answer(404, {"errors": [{"message": "No such API.", "code": 6, "moreInfo": ""}]}, limits)
            if space.get("huge"):
                pad = "x" * (9 << 20)
                return self.answer(200, ('[{"pad":"' + pad + '"}]').encode(), limits)
            return self.answer(200, body, limits)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"READY {server.server_address[1]}", flush=True)
    # Stop when the test's end of stdin closes (the test process went away).
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
