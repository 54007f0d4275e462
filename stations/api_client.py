"""HTTP client of the station app: timeouts on every call, JWT renewal before expiry, idle logout.

The server has no refresh endpoint, so "renewal" is a fresh ``POST /auth/token`` with the
credentials the operator typed, which are held in memory only (never on disk) and dropped on
logout or idle timeout. Renewal happens only while the operator is active: an idle station
stops renewing and falls back to the login dialog. Safe to use from several threads.
"""
from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit

import requests

USER_AGENT = "neurohub-station/0.1"


class ApiError(Exception):
    """The server answered with an error (problem+json when it could)."""

    def __init__(self, status: int, detail: str, title: str = "", errors: list | None = None):
        self.status, self.detail, self.title, self.errors = status, detail, title, errors or []
        super().__init__(f"{status} {title}: {detail}".strip())

    @property
    def permanent(self) -> bool:
        """True for 4xx answers that a retry with the same request cannot change."""
        return 400 <= self.status < 500 and self.status not in (401, 408, 409, 425, 429)


class Offline(ApiError):
    """The server could not be reached, timed out, or is temporarily unavailable (502/503/504)."""

    def __init__(self, detail: str, status: int = 0):
        super().__init__(status, detail, "offline")


class AuthError(ApiError):
    """Wrong credentials, or the token was refused and could not be renewed."""


class NotLoggedIn(Exception):
    """No operator is logged in (never, logged out, or idle timeout)."""


@dataclass
class _Auth:
    token: str | None = None
    expires_at: float = 0.0
    ttl: float = 0.0
    username: str | None = None
    role: str | None = None
    password: str | None = field(default=None, repr=False)


def token_claims(token: str) -> dict:
    """The JWT payload, unverified (display only: the server verifies)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


class ApiClient:
    """Typed calls to the NeuroHub API for one station."""

    def __init__(self, base_url: str, station: str, timeout: float = 5.0,
                 idle_timeout: float = 15 * 60, clock=time.time):
        self.base_url = base_url.rstrip("/") + "/"
        self.station = station
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.clock = clock
        self._auth = _Auth()
        self._lock = threading.RLock()
        self._sessions: dict[int, requests.Session] = {}  # per thread: a Session isn't shared
        self.last_activity = clock()
        self.logins = 0                   # how many tokens were fetched (renewal is observable)
        self.on_logout = None             # callback(reason) when idle timeout ends the session
        self.offline_events = 0           # requests that found the server unreachable (any thread)

    # -- session ------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        # Keyed by thread id: keeps each thread's keep-alive connections across calls.
        s = self._sessions.get(threading.get_ident())
        if s is None:
            s = self._sessions[threading.get_ident()] = requests.Session()
            s.headers["User-Agent"] = USER_AGENT
        return s

    @property
    def username(self) -> str | None:
        """The logged-in operator, if any."""
        return self._auth.username

    @property
    def logged_in(self) -> bool:
        """True while an operator is logged in (online, or offline with credentials held)."""
        return self._auth.username is not None

    @property
    def role(self) -> str | None:
        """The logged-in operator's role, from the token."""
        return self._auth.role

    def login_offline(self, username: str, password: str, role: str | None = None) -> None:
        """Hold credentials verified against the local cache; a token is fetched when online."""
        with self._lock:
            self._auth = _Auth(None, 0.0, 0.0, username, role, password)
            self.last_activity = self.clock()

    def login(self, username: str, password: str) -> dict:
        """Exchange credentials for a token; raises AuthError, Offline or ApiError."""
        body = self._send("POST", "api/v1/auth/token", json={"username": username,
                                                              "password": password},
                          auth=False).json()
        claims = token_claims(body["access_token"])
        with self._lock:
            now = self.clock()
            self._auth = _Auth(body["access_token"], now + float(body["expires_in"]),
                               float(body["expires_in"]), claims.get("name") or username,
                               claims.get("role"), password)
            self.logins += 1
            self.last_activity = now
        return {"username": self._auth.username, "role": self._auth.role}

    def logout(self, reason: str = "logout") -> None:
        """Forget the token and the credentials."""
        with self._lock:
            was = self._auth.username
            self._auth = _Auth()
        if was and self.on_logout and reason != "logout":
            self.on_logout(reason)

    def touch(self) -> None:
        """Record operator activity (keys, clicks, scans); background calls never do."""
        self.last_activity = self.clock()

    def idle_expired(self) -> bool:
        """True when the operator has been idle longer than the idle timeout."""
        return self.idle_timeout > 0 and self.clock() - self.last_activity > self.idle_timeout

    def check_idle(self) -> bool:
        """Log out if idle; returns True when that happened."""
        if self.logged_in and self.idle_expired():
            self.logout("idle")
            return True
        return False

    def _bearer(self) -> str:
        with self._lock:
            a = self._auth
            if a.username is None:
                raise NotLoggedIn()
            # Renew with a margin (a fifth of the lifetime, at least 30 s) so a slow request
            # never starts with a token that expires on the way.
            margin = max(30.0, a.ttl / 5)
            if a.token is None or self.clock() > a.expires_at - margin:
                if self.check_idle():
                    raise NotLoggedIn()
                self.login(a.username, a.password)
            return self._auth.token

    # -- transport ----------------------------------------------------------------------
    def url(self, path: str) -> str:
        """Absolute URL for an API path or a server-given (possibly absolute) URL."""
        return urljoin(self.base_url, path.lstrip("/") if not path.startswith("http") else path)

    def _send(self, method: str, path: str, *, auth: bool = True, ok=(200,), retry_auth=True,
              timeout: float | None = None, **kwargs) -> requests.Response:
        url = self.url(path)
        headers = dict(kwargs.pop("headers", None) or {})
        same_host = urlsplit(url).netloc == urlsplit(self.base_url).netloc
        if auth and same_host:  # never leak the token to a presigned storage URL
            headers["Authorization"] = f"Bearer {self._bearer()}"
        try:
            resp = self._session().request(method, url, headers=headers,
                                           timeout=timeout or self.timeout, **kwargs)
        except requests.Timeout as exc:
            self.offline_events += 1
            raise Offline(f"timed out after {timeout or self.timeout:g}s: {exc}") from exc
        except requests.RequestException as exc:  # refused, reset, DNS, no route
            self.offline_events += 1
            raise Offline(str(exc)) from exc
        if resp.status_code in ok:
            return resp
        if resp.status_code in (502, 503, 504):
            self.offline_events += 1
        if resp.status_code == 401 and auth and retry_auth and self._auth.password:
            resp.close()
            with self._lock:  # the server refused the token (restart with a new key?): renew
                self.login(self._auth.username, self._auth.password)
            return self._send(method, path, auth=auth, ok=ok, retry_auth=False, timeout=timeout,
                              headers={k: v for k, v in headers.items()
                                       if k != "Authorization"}, **kwargs)
        raise _error(resp)

    def _json(self, method: str, path: str, **kwargs):
        return self._send(method, path, **kwargs).json()

    # -- API ----------------------------------------------------------------------------
    def ping(self, timeout: float = 2.0) -> None:
        """Reach the server's liveness endpoint (no token); raises Offline when it cannot."""
        self._send("GET", "healthz", auth=False, timeout=min(self.timeout, timeout)).close()

    def get_lot(self, lot_no: str) -> dict:
        """The lot with its serials and completions (raises ApiError 404 when unknown)."""
        return self._json("GET", f"api/v1/lots/{quote(lot_no, safe='')}")

    def get_product(self, code: str) -> dict:
        """The product with its current routing."""
        return self._json("GET", f"api/v1/products/{quote(code, safe='')}")

    def get_station(self) -> dict | None:
        """This station's record (steps served, printer URI), or None if not registered."""
        cursor = None
        while True:
            page = self._json("GET", "api/v1/stations", params={"limit": 200, **(
                {"cursor": cursor} if cursor else {})})
            for item in page["items"]:
                if item["code"] == self.station:
                    return item
            cursor = page.get("next_cursor")
            if not cursor:
                return None

    def heartbeat(self, **body) -> dict:
        """Tell the server this station app is alive."""
        return self._json("POST", f"api/v1/stations/{quote(self.station, safe='')}/heartbeat",
                          json={k: v for k, v in body.items() if v is not None})

    def request_id(self, key: str) -> str:
        """The X-Request-ID a completion is sent with: station and key, the same on every retry,
        so one grep follows it from station.log through the server's logs to its label."""
        return f"{self.station}:{key}"[:64]

    def post_completion(self, body: dict, key: str) -> dict:
        """Submit a completion with its Idempotency-Key; returns ``{id, status}``."""
        return self._json("POST", "api/v1/completions", json=body, ok=(200, 201, 202),
                          headers={"Idempotency-Key": key, "X-Request-ID": self.request_id(key)})

    def get_completion(self, completion_id: int) -> dict:
        """A completion's status and reasons."""
        return self._json("GET", f"api/v1/completions/{int(completion_id)}")

    def next_label(self) -> dict | None:
        """The next station:// label job for this station (the server marks it sent), or None."""
        resp = self._send("GET", f"api/v1/stations/{quote(self.station, safe='')}/labels/next",
                          ok=(200, 204))
        return resp.json() if resp.status_code == 200 else None

    def ack_label(self, job_id: int, printed: bool, printer_reason: str | None = None) -> dict:
        """Report what the local printer did with a pulled job."""
        body = {"printed": printed}
        if printer_reason:
            body["printer_reason"] = printer_reason[:200]
        return self._json("POST", f"api/v1/stations/{quote(self.station, safe='')}/labels/"
                          f"{int(job_id)}/ack", json=body)

    def label_font(self, etag: str | None = None) -> tuple[bytes | None, str | None]:
        """The label font file and its ETag; (None, etag) while ``etag`` is current (304)."""
        headers = {"If-None-Match": f'"{etag}"'} if etag else {}
        resp = self._send("GET", "api/v1/labels/font", ok=(200, 304), headers=headers,
                          timeout=max(self.timeout, 30.0))
        if resp.status_code == 304:
            return None, etag
        return resp.content, resp.headers.get("ETag")

    def firmware_assignments(self) -> list[dict]:
        """This station's current firmware assignments."""
        body = self._json("GET", f"api/v1/stations/{quote(self.station, safe='')}/firmware")
        return body.get("items", []) if isinstance(body, dict) else body

    def ack_firmware(self, assignment_id: int, sha256: str) -> dict:
        """Prove the station holds the exact bytes of an assignment."""
        return self._json("POST", f"api/v1/stations/{quote(self.station, safe='')}/firmware/"
                          f"{int(assignment_id)}/ack", json={"sha256": sha256})

    def download(self, url: str, handle, offset: int = 0, etag: str | None = None,
                 progress=None, chunk: int = 256 * 1024) -> tuple[int, int, str | None]:
        """Stream ``url`` into ``handle`` (resuming at ``offset`` with Range/If-Range).

        Returns (bytes now in the file, total size, ETag). A server that answers 200 instead of
        206 (no Range support, or the file changed) is written from the start.
        """
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if etag:
                headers["If-Range"] = etag
        resp = self._send("GET", url, ok=(200, 206), stream=True, headers=headers,
                          timeout=max(self.timeout, 30.0))
        with resp:
            if resp.status_code == 200:
                offset = 0
                handle.seek(0)
                handle.truncate()
            total = offset + int(resp.headers.get("Content-Length") or 0)
            done = offset
            for block in resp.iter_content(chunk):
                handle.write(block)
                done += len(block)
                if progress:
                    progress(done, max(total, done))
        return done, max(total, done), resp.headers.get("ETag")


def _error(resp: requests.Response) -> ApiError:
    """Turn an error answer into ApiError / Offline / AuthError."""
    try:
        body = resp.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    detail = str(body.get("detail") or resp.reason or resp.status_code)
    if body.get("errors"):
        detail += ": " + "; ".join(f"{e.get('field')}: {e.get('message')}"
                                   for e in body["errors"] if isinstance(e, dict))
    if resp.status_code in (502, 503, 504):
        return Offline(detail, resp.status_code)
    cls = AuthError if resp.status_code == 401 else ApiError
    return cls(resp.status_code, detail, str(body.get("title", "")), body.get("errors"))
