"""The dashboard's security: who may talk to it, and who may change anything.

- Host: only the loopback names and addresses with the server's own port. A web page on
  another site that re-points its DNS name at 127.0.0.1 (DNS rebinding) sends its own
  name as Host and is refused before any route runs.
- Writes: a request that changes something must come from the dashboard's own origin
  (Origin, when sent, equals the server's; Sec-Fetch-Site, when sent, is same-origin) and
  carry the workspace's token in X-Orch-Token, compared in constant time. API reads that a
  browser marks as coming from another site are refused too.
- The token: 32 random bytes per workspace (the state root the server serves, every
  session of it), in <root>/.dashboard-token with mode 0600, made on first use and printed
  by `orch serve` — also before any session exists, so the link opened then still acts on
  the sessions that appear. It travels in the URL's fragment, which browsers never send
  to a server or put in a Referer.
- Every response forbids framing, sniffing, referrers and any script or connection that
  is not the server's own (Content-Security-Policy).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Iterable, Optional

from ..core.errors import InvalidInput

TOKEN_HEADER = "x-orch-token"
TOKEN_FILE = ".dashboard-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
     b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


# --------------------------------------------------------------------------- binding


def check_bind_host(host: str) -> str:
    """The address to bind: a loopback or one specific interface address, never a wildcard."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise InvalidInput(f"--host must be an IP address such as 127.0.0.1, not {host!r}") from None
    if ip.is_unspecified:
        raise InvalidInput(f"--host {host} would listen on every interface: name the one address to serve on "
                           "(the default, 127.0.0.1, keeps the dashboard on this machine)")
    return str(ip)


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def url_host(host: str) -> str:
    """An address as it appears in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host


def allowed_hosts(bind_host: str, port: int) -> frozenset[str]:
    """The Host header values this server answers to."""
    names = set(LOOPBACK_NAMES) | {url_host(bind_host)}
    hosts = {f"{n}:{port}" for n in names}
    if port == 80:
        hosts |= names  # browsers leave out the default port
    return frozenset(h.lower() for h in hosts)


def allowed_origins(hosts: Iterable[str]) -> frozenset[str]:
    return frozenset(f"http://{h}" for h in hosts)


# --------------------------------------------------------------------------- the token


def _token_path(root: Path) -> Path:
    return Path(root) / TOKEN_FILE


def workspace_token(root: Path) -> str:
    """The dashboard token of the workspace whose state is in `root`, made (mode 0600) on first use."""
    path = _token_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077 == 0 and st.st_uid == os.getuid():
            token = path.read_text().strip()
            if len(token) >= 32:
                return token
    except FileNotFoundError:
        pass
    # Missing, short, or readable by others: whoever could read it may have it, so make a new one.
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f"{TOKEN_FILE}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


def token_matches(root: Path, presented: Optional[str]) -> bool:
    """Constant-time comparison with the workspace's token; False when none was presented or made."""
    if not presented:
        return False
    try:
        expected = _token_path(root).read_text().strip()
    except FileNotFoundError:
        return False
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


# --------------------------------------------------------------------------- the middleware


class RequestGuard:
    """ASGI middleware: Host and cross-site checks on every request, security headers on every reply."""

    def __init__(self, app, hosts: frozenset[str]):
        self.app = app
        self.hosts = hosts
        self.origins = allowed_origins(hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # nothing here speaks it: close at the handshake
            await receive()
            return await send({"type": "websocket.close", "code": 1008})
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self.refusal(scope["method"], scope["path"], headers)
        if problem is not None:
            return await _refuse(send, *problem)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def refusal(self, method: str, path: str, headers: dict[str, str]) -> Optional[tuple[int, str]]:
        """(status, reason) when the request must be refused, else None."""
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            return 403, (f"host {host[:100]!r} is not served here: open the dashboard at the address "
                         "`orch serve` printed")
        site = headers.get("sec-fetch-site")
        origin = headers.get("origin")
        if method not in SAFE_METHODS:
            if origin is not None and origin.lower() not in self.origins:
                return 403, "cross-origin writes are refused"
            if site is not None and site != "same-origin":
                return 403, f"writes from a {site} page are refused"
        elif path.startswith("/api/") and site in ("cross-site", "same-site"):
            return 403, f"API requests from a {site} page are refused"
        return None


async def _refuse(send, status: int, reason: str) -> None:
    body = json.dumps({"error": reason}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})
