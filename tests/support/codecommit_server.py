#!/usr/bin/env python3
"""A local stand-in for CodeCommit: its Git endpoint and the control-plane calls backlog-mirror
makes, over TLS, both checking SigV4.

Git: git http-backend serves the repositories under ROOT; every request must carry HTTP basic
auth whose password verifies as a CodeCommit signature, recomputed here with botocore's SigV4
signer (not with the code under test) for the request's host, repository path and timestamp.
Anything else gets 401. Optionally rejects pushes with more than N ref updates, as CodeCommit
does. A push that deletes the repository's default branch has that ref refused, as CodeCommit's
DeleteBranch refuses it: "The specified branch is the default branch for the repository, and
cannot be deleted. To delete this branch, you must first set another branch as the default
branch." (DefaultBranchCannotBeDeletedException, CodeCommit API Reference, DeleteBranch, read
2026-11-25). AWS documents the rule for the API; that a Git push is held to it too is this
stand-in's assumption, the strict reading: backlog-mirror moves the default first either way.

API: POST / with X-Amz-Target CodeCommit_20150413.{GetRepository,CreateRepository,
UpdateDefaultBranch}, AWS JSON 1.1, the Authorization header verified as SigV4 (service
codecommit) with botocore; errors in AWS's shape (HTTP 400, x-amzn-ErrorType, {"__type",
"message"}): RepositoryDoesNotExistException, RepositoryNameExistsException,
BranchDoesNotExistException, AccessDeniedException (for actions named by --deny), and
UnrecognizedClientException / InvalidSignatureException (403) for bad credentials. A repository's
default branch is its HEAD; as on CodeCommit, a repository has none until a branch is pushed,
and then the first branch pushed becomes it.

    codecommit_server.py --root DIR --region us-east-1 --cred AKID:SECRET[:TOKEN] \
        [--max-ref-updates 4000] [--log FILE] [--deny ACTION]...

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
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:codecommit.proxy-only.test\n"
                "basicConstraints=CA:FALSE\n")
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


ZERO = "0" * 40

# The update hook every repository runs (core.hooksPath): refuse to delete the default branch.
UPDATE_HOOK = """#!/bin/sh
if [ "$3" = "%s" ] && [ "$1" = "$(git symbolic-ref -q HEAD)" ]; then
  echo "DefaultBranchCannotBeDeletedException: $1 is the default branch for the repository, and cannot be deleted. To delete this branch, you must first set another branch as the default branch." >&2
  exit 1
fi
exit 0
""" % ZERO


def git_in(repo, *args):
    return subprocess.run(["git", "--git-dir", repo] + list(args), capture_output=True,
                          env=dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null"))


def branches(repo):
    out = git_in(repo, "for-each-ref", "--format=%(refname)", "refs/heads/").stdout.decode()
    return [l for l in out.splitlines() if l]


def default_branch(repo):
    """HEAD's branch if it exists; else, once branches exist, the first pushed (see main's log)."""
    head = git_in(repo, "symbolic-ref", "-q", "HEAD").stdout.decode().strip()
    present = branches(repo)
    if head in present:
        return head[len("refs/heads/"):]
    return None


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

    def parse_request(self):
        # A request in absolute form (`POST https://host/ HTTP/1.1`, as a client that reached
        # the server through a proxy may send it) names the same resource as its path alone:
        # HTTP/1.1 servers must accept both (RFC 9112, section 3.2.2).
        if not super().parse_request():
            return False
        for scheme in ("https://", "http://"):
            if self.path.startswith(scheme):
                rest = self.path[len(scheme):]
                self.path = "/" + rest.partition("/")[2]
        return True

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

    def api_error(self, status, kind, message):
        body = json.dumps({"__type": kind, "message": message}).encode()
        self.server.log({"method": self.command, "path": self.path, "status": status, "api_error": kind})
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("x-amzn-ErrorType", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def api_verify(self, body):
        """None when the Authorization header is a valid SigV4 signature of this request."""
        header = self.headers.get("Authorization", "")
        fields = {}
        if not header.startswith("AWS4-HMAC-SHA256 "):
            return "no SigV4 authorization"
        for part in header[len("AWS4-HMAC-SHA256 "):].split(","):
            key, _, value = part.strip().partition("=")
            fields[key] = value
        try:
            access_key, date, region, service, terminal = fields["Credential"].split("/")
            signed = fields["SignedHeaders"].split(";")
            signature = fields["Signature"]
        except (KeyError, ValueError):
            return "malformed authorization"
        cred = self.server.creds.get(access_key)
        if cred is None:
            return "unknown access key"
        secret, want_token = cred
        if (self.headers.get("X-Amz-Security-Token") or None) != want_token:
            return "wrong session token"
        if (region, service, terminal) != (self.server.region, "codecommit", "aws4_request"):
            return "wrong credential scope"
        stamp = self.headers.get("X-Amz-Date", "")
        try:
            when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
        except ValueError:
            return "malformed X-Amz-Date"
        if abs(datetime.datetime.utcnow() - when) > FRESHNESS or not stamp.startswith(date):
            return "stale signature"
        for required in ("host", "x-amz-date", "x-amz-target"):
            if required not in signed:
                return "%s is not signed" % required
        request = botocore.awsrequest.AWSRequest(
            method=self.command, url="https://{}{}".format(self.headers.get("Host", ""), self.path),
            data=body, headers={h: self.headers.get(h, "") for h in signed})
        request.context["timestamp"] = stamp
        creds = botocore.credentials.Credentials(access_key, secret, want_token)
        signer = botocore.auth.SigV4Auth(creds, "codecommit", self.server.region)
        canonical = signer.canonical_request(request)
        want = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(want, signature):
            return "signature mismatch"
        return None

    def handle_api(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        why = self.api_verify(body)
        if why:
            kind = "UnrecognizedClientException" if why == "unknown access key" else "InvalidSignatureException"
            self.server.log({"method": "POST", "path": "/", "status": 403, "why": why})
            return self.api_error(403, kind, "The request signature is not valid: " + why)
        action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return self.api_error(400, "SerializationException", "body is not JSON")
        name = request.get("repositoryName", "")
        repo = os.path.join(self.server.root, name)
        self.server.log({"method": "POST", "path": "/", "action": action, "request": request})
        if action in self.server.deny:
            return self.api_error(400, "AccessDeniedException",
                                  "User is not authorized to perform: codecommit:%s" % action)
        if not name or "/" in name or name.startswith("."):
            return self.api_error(400, "InvalidRepositoryNameException", "invalid repository name")
        exists = os.path.isdir(repo)
        if action == "GetRepository":
            if not exists:
                return self.api_error(400, "RepositoryDoesNotExistException", "%s does not exist" % name)
            return self.api_answer({"repositoryMetadata": self.metadata(name, repo)})
        if action == "CreateRepository":
            if exists:
                return self.api_error(400, "RepositoryNameExistsException", "Repository named %s already exists" % name)
            subprocess.run(["git", "init", "-q", "--bare", repo], check=True, capture_output=True)
            # CodeCommit has no default branch until one is pushed: HEAD names none that exists.
            git_in(repo, "symbolic-ref", "HEAD", "refs/heads/.no-default-yet")
            with open(os.path.join(repo, "description"), "w") as f:
                f.write(request.get("repositoryDescription", ""))
            return self.api_answer({"repositoryMetadata": self.metadata(name, repo)})
        if action == "UpdateDefaultBranch":
            if not exists:
                return self.api_error(400, "RepositoryDoesNotExistException", "%s does not exist" % name)
            branch = request.get("defaultBranchName", "")
            if "refs/heads/" + branch not in branches(repo):
                return self.api_error(400, "BranchDoesNotExistException", "Branch %s does not exist" % branch)
            git_in(repo, "symbolic-ref", "HEAD", "refs/heads/" + branch)
            return self.api_answer({})
        return self.api_error(400, "UnknownOperationException", "unknown operation " + action)

    def metadata(self, name, repo):
        meta = {"repositoryName": name, "repositoryId": "0000-" + name, "accountId": "123456789012",
                "Arn": "arn:aws:codecommit:%s:123456789012:%s" % (self.server.region, name),
                "cloneUrlHttp": "https://git-codecommit.%s.amazonaws.com/v1/repos/%s" % (self.server.region, name)}
        try:
            with open(os.path.join(repo, "description")) as f:
                description = f.read()
            if description and not description.startswith("Unnamed repository"):
                meta["repositoryDescription"] = description
        except OSError:
            pass
        branch = default_branch(repo)
        if branch:
            meta["defaultBranch"] = branch
        return meta

    def api_answer(self, payload):
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def handle_git(self):
        path, _, query = self.path.partition("?")
        if self.command == "POST" and path == "/" and self.headers.get("X-Amz-Target"):
            return self.handle_api()
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
                   GIT_CONFIG_COUNT="3", GIT_CONFIG_KEY_0="http.receivepack", GIT_CONFIG_VALUE_0="true",
                   GIT_CONFIG_KEY_1="core.hooksPath", GIT_CONFIG_VALUE_1=self.server.hooks,
                   # The update hook refuses it in CodeCommit's words, not receive-pack in git's.
                   GIT_CONFIG_KEY_2="receive.denyDeleteCurrent", GIT_CONFIG_VALUE_2="false")
        for header, var in (("Content-Type", "CONTENT_TYPE"), ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                            ("Git-Protocol", "GIT_PROTOCOL")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        if path.endswith("/git-receive-pack"):
            self.first_branch_becomes_default(os.path.join(self.server.root, parts[3]))
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

    def first_branch_becomes_default(self, repo):
        """CodeCommit makes the first branch pushed to an empty repository its default. Of a first
        push that creates several, this takes main if among them, else the first by name."""
        if default_branch(repo) is None:
            present = branches(repo)
            if present:
                main = "refs/heads/main" if "refs/heads/main" in present else present[0]
                git_in(repo, "symbolic-ref", "HEAD", main)

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
    p.add_argument("--deny", action="append", default=[], help="answer this action AccessDenied")
    args = p.parse_args()
    certs = tempfile.mkdtemp(prefix="cc-certs-")
    ca, crt, key = make_certs(certs)
    server = Server(("127.0.0.1", 0), Handler)
    server.root, server.region, server.log_path = args.root, args.region, args.log
    server.max_updates = args.max_ref_updates
    server.deny = set(args.deny)
    server.hooks = os.path.join(certs, "hooks")
    os.mkdir(server.hooks)
    with open(os.path.join(server.hooks, "update"), "w") as f:
        f.write(UPDATE_HOOK)
    os.chmod(os.path.join(server.hooks, "update"), 0o755)
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
