"""A VLM judge (UnifiedReward or any model) behind an OpenAI-compatible chat-completions endpoint.

Large judges run where users already serve them (vLLM, SGLang, TGI...). Each image is sent as a
base64 PNG data URL with the prompt filled into a template; the first number after "Final Score:"
(or else the first number of the reply) is the score. The endpoint is checked once at construction,
so a down server fails the run at start with the URL in the message, not in the middle of training.

What the judge trusts, and what it does not:
- the API key comes from the environment variable named by `api_key_env`, is sent only to the
  endpoint's own origin (scheme, host, port) and never appears in messages; an endpoint URL that
  carries credentials or a query string is refused (`endpoint_problem`);
- a redirect is followed only within the same origin (at most `MAX_REDIRECTS`); one to another
  origin fails the request without contacting it;
- each request has one deadline (`timeout_s`, from connecting to the reply's last byte: a server
  dripping bytes cannot stretch it) and reads at most `max_response_bytes` of the reply;
- a score outside [`score_min`, `score_max`], or a reply without one, makes the sample invalid
  (NaN: the trainer drops it from its group).
A batch's requests run concurrently; those that fail with a connection error, a timeout, HTTP 429
or 5xx are resent together after one backoff per round (0.5 s, doubling, at most 8 s), `retries`
rounds at most. Requests still failing then score NaN with one warning for the batch; a batch call
never raises for a failed request, so it is never re-run image by image.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import logging
import math
import os
import re
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import torch

from vgrpo.rewards.pil import to_pil_images

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = (
    "You are given a text caption and an image generated from it. Rate how well the image matches "
    "the caption and its overall quality on a scale from 1 to 5.\nCaption: {prompt}\n"
    "Answer with one line: Final Score: <number>"
)
_NUMBER_TEXT = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_SCORE = re.compile(r"Final Score:\s*(" + _NUMBER_TEXT + ")", re.IGNORECASE)
_NUMBER = re.compile(_NUMBER_TEXT)
MAX_REDIRECTS = 3
REDIRECT_CODES = (301, 302, 303, 307, 308)


class JudgeUnavailableError(ConnectionError):
    """The judge endpoint cannot be reached or keeps failing."""


def parse_score(text: str) -> float:
    """The number after 'Final Score:', else the first number in `text`; ValueError if none."""
    match = _SCORE.search(text) or _NUMBER.search(text)
    if match is None:
        raise ValueError(f"judge reply has no score: {text[:200]!r}")
    return float(match.group(1) if match.re is _SCORE else match.group(0))


def _origin(parts: urllib.parse.SplitResult) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in."""
    return parts.scheme, (parts.hostname or ""), parts.port or (443 if parts.scheme == "https" else 80)


def redacted(url: str) -> str:
    """`url` without user info, query and fragment (for messages)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def endpoint_problem(url: str | None) -> str | None:
    """What makes `url` unusable as a judge endpoint (credentials, query, scheme), None if fine.

    Paths that are not URLs (no "://") are not judged here. The message shows the URL redacted.
    """
    if not url or "://" not in url:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return f"endpoint {redacted(url)} is not a valid URL"
    if "@" in parts.netloc:
        return (f"endpoint {redacted(url)} (redacted) holds credentials; give the API key through the "
                "environment variable named by reward.judge.api_key_env")
    if parts.query or parts.fragment:
        return (f"endpoint {redacted(url)} (redacted) has a query string or fragment; give the API key through "
                "the environment variable named by reward.judge.api_key_env")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"endpoint {redacted(url)} must be an http:// or https:// URL with a host"
    return None


@dataclass
class _Failed(Exception):
    """One request failed: why (no secret in it), and whether resending it may help."""

    reason: str
    retry: bool


class HttpJudgeReward:
    """Scores each (image, prompt) with a chat-completions call.

    Args:
        url: base URL of the OpenAI-compatible API, e.g. "http://127.0.0.1:8000/v1".
        model: the served model name.
        name: reward name in logs (e.g. "unifiedreward").
        template: user message; "{prompt}" is replaced by the prompt ("" = DEFAULT_TEMPLATE).
        score_min, score_max: the valid score range (inclusive); others make the sample invalid.
        api_key_env: name of the environment variable holding the API key ("" = no key).
        timeout_s: deadline per request; retries: extra rounds for transient failures;
        max_response_bytes: reply size cap; max_workers: concurrent requests.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str,
        name: str = "http_judge",
        template: str = "",
        score_min: float = 1.0,
        score_max: float = 5.0,
        api_key_env: str = "",
        timeout_s: float = 60.0,
        retries: int = 3,
        max_response_bytes: int = 2**20,
        max_workers: int = 8,
        check_endpoint: bool = True,
    ):
        problem = endpoint_problem(url) or (None if "://" in url else f"endpoint {url!r} is not an http(s) URL")
        if problem:
            raise ValueError(f"{name}: {problem}")
        template = template or DEFAULT_TEMPLATE
        if "{prompt}" not in template:
            raise ValueError(f"{name}: the template must contain {{prompt}}")
        if not score_min < score_max:
            raise ValueError(f"{name}: score_min ({score_min}) must be < score_max ({score_max})")
        self.url = url.rstrip("/")
        self.origin = _origin(urllib.parse.urlsplit(self.url))
        self.model = model
        self.name = name
        self.template = template
        self.score_range = (float(score_min), float(score_max))
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_response_bytes = max_response_bytes
        self.max_workers = max_workers
        self._headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(f"{name}: the API key variable {api_key_env} is not set in the environment")
            self._headers["Authorization"] = f"Bearer {key}"
        if check_endpoint:
            self.check_endpoint()

    def check_endpoint(self) -> None:
        """GET {url}/models; raise JudgeUnavailableError naming the URL if it does not answer."""
        try:
            self._request("GET", f"{self.url}/models", None, time.monotonic() + min(self.timeout_s, 10.0))
        except _Failed as failure:
            raise JudgeUnavailableError(f"judge endpoint {self.url} is not reachable: {failure.reason}") from None

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1], B prompts -> [B] float32 scores (NaN where no valid score came back)."""
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{self.name}: {images.shape[0]} images but {len(prompts)} prompts")
        bodies = [self._body(_png_data_url(im), p) for im, p in zip(to_pil_images(images), prompts)]
        scores = torch.full((len(bodies),), math.nan)
        pending, reasons = list(range(len(bodies))), {}
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
                outcomes = list(pool.map(self._score_one, [bodies[i] for i in pending]))
            again = []
            for i, outcome in zip(pending, outcomes):
                if isinstance(outcome, _Failed):
                    reasons[i] = outcome.reason
                    if outcome.retry:
                        again.append(i)
                else:
                    scores[i] = outcome
                    reasons.pop(i, None)
            pending = again
            if not pending:
                break
        if reasons:
            log.warning("judge %s: %d of %d images have no valid score (%s); they are dropped from their groups",
                        self.url, len(reasons), len(bodies), "; ".join(sorted(set(reasons.values())))[:500])
        return scores

    def _body(self, image_url: str, prompt: str) -> bytes:
        text = self.template.replace("{prompt}", prompt)
        message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}},
                                               {"type": "text", "text": text}]}
        return json.dumps({"model": self.model, "temperature": 0.0, "messages": [message]}).encode()

    def _score_one(self, body: bytes) -> float | _Failed:
        """One request's score, or why it failed."""
        try:
            data = self._request("POST", f"{self.url}/chat/completions", body, time.monotonic() + self.timeout_s)
            try:
                content = json.loads(data)["choices"][0]["message"]["content"]
            except (ValueError, RecursionError, KeyError, IndexError, TypeError):
                raise _Failed("malformed reply (no choices[0].message.content)", retry=False) from None
            if not isinstance(content, str):
                raise _Failed("malformed reply (content is not text)", retry=False)
            try:
                score = parse_score(content)
            except ValueError:
                raise _Failed("reply without a score", retry=False) from None
            low, high = self.score_range
            if not low <= score <= high:
                raise _Failed(f"score {score:g} outside [{low:g}, {high:g}]", retry=False)
            return score
        except _Failed as failure:
            return failure

    def _request(self, method: str, url: str, body: bytes | None, deadline: float) -> bytes:
        """The reply body of `method url`, following same-origin redirects; raises _Failed."""
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            status, location, data = self._send(method, parts, body, deadline)
            if status in REDIRECT_CODES:
                try:
                    target = urllib.parse.urljoin(url, location or "")
                    target_parts = urllib.parse.urlsplit(target)
                    same = _origin(target_parts) == self.origin
                except ValueError:
                    raise _Failed(f"HTTP {status} redirect to a malformed location", retry=False) from None
                if not same:
                    raise _Failed(f"HTTP {status} redirect to another origin "
                                  f"({target_parts.scheme}://{target_parts.hostname}) not followed", retry=False)
                url = target
                continue
            if status == 429 or status >= 500:
                raise _Failed(f"HTTP {status}", retry=True)
            if status >= 400:
                raise _Failed(f"HTTP {status}", retry=False)
            return data
        raise _Failed(f"more than {MAX_REDIRECTS} redirects", retry=False)

    def _send(self, method: str, parts: urllib.parse.SplitResult, body: bytes | None,
              deadline: float) -> tuple[int, str | None, bytes]:
        """(status, Location header, body of a 2xx reply) of one HTTP exchange within `deadline`.

        A timer shuts the socket down at the deadline, so no sequence of slow reads outlives it.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Failed(f"no reply within {self.timeout_s:g} s", retry=True)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=remaining)
        expired, sockets = threading.Event(), []

        def cut() -> None:
            expired.set()
            for sock in sockets:  # kept here: the connection drops its socket once the response owns it
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket, under TLS too

        timer = threading.Timer(remaining, cut)
        timer.daemon = True
        timer.start()
        try:
            conn.connect()
            sockets.append(conn.sock)
            if expired.is_set():
                cut()
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request(method, path, body=body, headers=self._headers)
            response = conn.getresponse()
            if not 200 <= response.status < 300:
                return response.status, response.getheader("Location"), b""
            length = response.getheader("Content-Length", "")
            if length.isdigit() and int(length) > self.max_response_bytes:
                raise _Failed(f"reply of {int(length)} bytes, more than {self.max_response_bytes}", retry=False)
            data = response.read(self.max_response_bytes + 1)
            if len(data) > self.max_response_bytes:
                raise _Failed(f"reply longer than {self.max_response_bytes} bytes", retry=False)
            if expired.is_set():
                raise _Failed(f"no complete reply within {self.timeout_s:g} s", retry=True)
            return response.status, None, data
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set() or time.monotonic() >= deadline:
                raise _Failed(f"no complete reply within {self.timeout_s:g} s", retry=True) from None
            raise _Failed(f"{type(exc).__name__}: {str(exc)[:200]}", retry=True) from None
        finally:
            timer.cancel()
            conn.close()


def _png_data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
