#!/usr/bin/env python3
"""A local stand-in for CodeCommit's Git endpoint: smart HTTP over TLS that checks SigV4.

git http-backend serves the repositories under ROOT; every request must carry HTTP basic auth
whose password verifies as a CodeCommit signature, recomputed here with botocore's SigV4 signer
(not with the code under test) for the request's host, repository path and timestamp. Anything
else gets 401. Optionally rejects pushes with more than N ref updates, as CodeCommit does.

    codecommit_server.py --root DIR --region us-east-1 --cred AKID:SECRET[:TOKEN] \
        [--max-ref-updates 4000] [--log FILE]

Prints "READY <port> <ca-cert-path>" once listening on 127.0.0.1 (port chosen by the OS).
"""
import argparse
import datetime
import gzip
import hmac
import http.server
import json
import os
import socketserver
import ssl
import subprocess
import sys
import tempfile
from urllib.parse import unquote

import botocore.auth
import botocore.awsrequest
import botocore.credentials

FRESHNESS = datetime.timedelta(minutes=15)


def make_certs(directory):
    ca_key, ca_crt = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.crt")
    key, csr, crt = (os.path.join(directory, n) for n in ("server.key", "server.csr", "server.crt"))
    ext = os.path.join(directory, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_crt,
        "-days", "2", "-subj", "/CN=backlog-mirror test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "2", "-extfile", ext)
    return ca_crt, crt, key


def expected_signature(creds, region, host, path, stamp):
    request = botocore.awsrequest.AWSRequest(method="GIT", url="https://{}{}".format(host, path))
    request.context["timestamp"] = stamp
    signer = botocore.auth.SigV4Auth(creds, "codecommit", region)
    canonical = "GIT\n{}\n\nhost:{}\n\nhost\n".format(path, host)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def count_ref_updates(body):
    """Commands in a receive-pack request: pkt-lines before the first flush."""
    count, i = 0, 0
    while i + 4 <= len(body):
        size = int(body[i:i + 4], 16)
        if size == 0:
            break
        count += 1
        i += size
    return count


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def deny(self, why):
        self.server.log({"method": self.command, "path": self.path, "status": 401, "why": why})
        body = ("denied: " + why + "\n").encode()
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="codecommit"')
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def authorized(self, repo_path):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return "no credentials"
        import base64
        try:
            user, password = base64.b64decode(header[6:]).decode().split(":", 1)
        except Exception:
            return "malformed credentials"
        access_key, _, token = user.partition("%")
        cred = self.server.creds.get(access_key)
        if cred is None:
            return "unknown access key"
        secret, want_token = cred
        if (want_token or "") != (token or ""):
            return "wrong session token"
        if len(password) < 17 or password[15] != "Z":
            return "malformed password"
        stamp, signature = password[:15], password[16:]
        try:
            when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%S")
        except ValueError:
            return "malformed timestamp"
        if abs(datetime.datetime.utcnow() - when) > FRESHNESS:
            return "stale signature"
        creds = botocore.credentials.Credentials(access_key, secret, want_token)
        want = expected_signature(creds, self.server.region, self.headers.get("Host", ""), repo_path, stamp)
        if not hmac.compare_digest(want, signature):
            return "signature mismatch"
        return None

    def handle_git(self):
        path, _, query = self.path.partition("?")
        parts = path.split("/")
        if len(parts) < 4 or parts[1] != "v1" or parts[2] != "repos":
            self.send_error(404)
            return
        repo_path = "/".join(parts[:4])
        why = self.authorized(repo_path)
        if why:
            self.deny(why)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []  # joined once: appending to bytes would copy the body per chunk
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(length)
        if path.endswith("/git-receive-pack") and self.server.max_updates:
            plain = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
            updates = count_ref_updates(plain)
            if updates > self.server.max_updates:
                msg = "too many ref updates in one push: {} > {}\n".format(updates, self.server.max_updates).encode()
                self.server.log({"method": self.command, "path": path, "status": 400, "updates": updates})
                self.send_response(400)
                self.send_header("Content-Length", str(len(msg)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(msg)
                return
        env = dict(os.environ, GIT_PROJECT_ROOT=self.server.root, GIT_HTTP_EXPORT_ALL="1",
                   REQUEST_METHOD=self.command, PATH_INFO="/" + "/".join(parts[3:]),
                   QUERY_STRING=query, CONTENT_LENGTH=str(len(body)), REMOTE_USER="codecommit",
                   REMOTE_ADDR="127.0.0.1", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null",
                   GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.receivepack", GIT_CONFIG_VALUE_0="true")
        for header, var in (("Content-Type", "CONTENT_TYPE"), ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                            ("Git-Protocol", "GIT_PROTOCOL")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        # Logged before the answer goes out: a client that has its answer finds its request in
        # the log (the benchmark reads traffic from it).
        self.server.log({"method": self.command, "path": path, "query": query, "status": status,
                         "request_bytes": len(body), "response_bytes": len(payload)})
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = handle_git
    do_POST = handle_git


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def log(self, entry):
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--cred", action="append", default=[], help="AKID:SECRET[:TOKEN]")
    p.add_argument("--max-ref-updates", type=int, default=0)
    p.add_argument("--log")
    args = p.parse_args()
    certs = tempfile.mkdtemp(prefix="cc-certs-")
    ca, crt, key = make_certs(certs)
    server = Server(("127.0.0.1", 0), Handler)
    server.root, server.region, server.log_path = args.root, args.region, args.log
    server.max_updates = args.max_ref_updates
    server.creds = {}
    for c in args.cred:
        parts = c.split(":", 2)
        server.creds[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else None)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("READY {} {}".format(server.server_address[1], ca), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
