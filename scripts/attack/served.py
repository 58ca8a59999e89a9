"""What the attack scripts share: `liveops serve` on a free loopback port with a fresh data
directory (a context manager that stops it), and signed HTTP calls to it."""

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request


def free_port():
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, secret=None, body=None, timeout=30):
    """`(status, body bytes)`; a body is sent as compact JSON signed with `secret` (`v2=`:
    HMAC-SHA256 over `v2\\n<ts>\\n<METHOD>\\n<path>\\n<body>`, as the server checks it); status 0
    when the server did not answer."""
    data = None
    headers = {"content-type": "application/json"}
    if body is not None:
        data = json.dumps(body, separators=(",", ":")).encode()
        ts = str(int(time.time()))
        signed_path = urllib.parse.urlsplit(base + path).path
        text = f"v2\n{ts}\n{method.upper()}\n{signed_path}\n".encode() + data
        mac = hmac.new(secret, text, hashlib.sha256).hexdigest()
        headers.update({"x-timestamp": ts, "x-signature": "v2=" + mac})
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


class Served:
    """`with Served(bin, secret, "liveops-x-", KEY="value") as s:` runs `bin serve` (the embedded
    default) with HMAC secret `secret` and the extra settings given, until it answers /readyz;
    `s.base`, `s.data` and `s.process` describe it. Leaving the block stops it (SIGTERM, then
    SIGKILL after 20 s)."""

    def __init__(self, bin, secret, prefix, **settings):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.data = tempfile.mkdtemp(prefix=prefix)
        self.env = dict(os.environ, PORT=str(self.port), BIND="127.0.0.1", DATA_DIR=self.data,
                        HMAC_SECRET=secret.decode(), LOG_LEVEL="warn", RATE_LIMIT_MAX="100000",
                        **settings)
        self.bin = bin
        self.process = None

    def __enter__(self):
        self.process = subprocess.Popen([self.bin, "serve"], env=self.env,
                                        stdout=subprocess.DEVNULL)
        end = time.time() + 120
        while call(self.base, "GET", "/readyz", timeout=10)[0] != 200:
            if time.time() > end or self.process.poll() is not None:
                self.__exit__(None, None, None)
                sys.exit("the server did not get ready")
            time.sleep(0.5)
        return self

    def __exit__(self, *_):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
