"""A git smart-HTTP server for the tests: `git http-backend` (CGI) behind a small threaded HTTP
server that requires basic auth whose password is the current token, as GitHub does with an
access token. It records the requests it receives, so a test can see what reached it."""

import base64
import os
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional


def git(*args: str, cwd: Optional[Path] = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    r = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return r.stdout.strip()


class GitServer:
    """Serves the bare repositories under `root` at http://HOST:port/<path>.git."""

    def __init__(self, root: Path, token: str, host: str = "127.0.0.2",
                 tls: Optional[tuple[Path, Path]] = None) -> None:
        self.root = root
        self.token = token
        self.requests: list[dict] = []
        backend = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                                 check=True).stdout.strip() + "/git-http-backend"
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                self.handle_git()

            def do_POST(self):
                self.handle_git()

            def body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        n = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if n == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(n)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def handle_git(self):
                body = self.body()
                auth = self.headers.get("Authorization", "")
                server.requests.append({"path": self.path, "authorization": auth,
                                        "headers": dict(self.headers)})
                ok = False
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    ok = password == server.token
                if not ok:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                env = {
                    "GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": user, "REMOTE_ADDR": "127.0.0.1",
                    "GIT_HTTP_MAX_REQUEST_BUFFER": "100M", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                }
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                if self.headers.get("Git-Protocol"):
                    env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                r = subprocess.run([backend], input=body, env=env, capture_output=True)
                head, _, payload = r.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.split(b"\r\n"):
                    k, _, v = line.decode().partition(":")
                    if k.lower() == "status":
                        status = int(v.strip().split()[0])
                    elif k:
                        headers.append((k, v.strip()))
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.host = host
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, repo: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/{repo}"

    def close(self) -> None:
        self.httpd.shutdown()


def make_repo(root: Path, name: str) -> dict:
    """A bare repository `root/<name>.git` with `main` (README) and `feature` (one more commit);
    returns the commits' SHAs."""
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README").write_text("hello from the repository\n")
    git("add", ".", cwd=work)
    git("commit", "-qm", "first", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-qb", "feature", cwd=work)
    (work / "feature.txt").write_text("on the feature branch\n")
    git("add", ".", cwd=work)
    git("commit", "-qm", "feature", cwd=work)
    feature = git("rev-parse", "HEAD", cwd=work)
    bare = root / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", "--bare", str(work), str(bare))
    git("config", "http.receivepack", "true", cwd=bare)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=bare)
    return {"first": first, "feature": feature, "bare": bare}


def certificates(d: Path, ip: str = "127.0.0.2") -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for `ip`: (ca.pem, server.pem, server.key)."""
    def run(*a):
        subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=git-test-ca",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}",
        "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
    (d / "san.ext").write_text(f"subjectAltName=IP:{ip}\n")
    run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey",
        str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.ext"),
        "-out", str(d / "server.pem"))
    return d / "ca.pem", d / "server.pem", d / "server.key"
