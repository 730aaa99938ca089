"""A VLM judge (UnifiedReward or any model) behind an OpenAI-compatible chat-completions endpoint.

Large judges run where users already serve them (vLLM, SGLang, TGI...). Each image is sent as a
base64 PNG data URL with the prompt filled into a template; the first number after "Final Score:"
(or else the first number of the reply) is the score. Requests run concurrently, each with a
timeout and retries with exponential backoff. The endpoint is checked once at construction, so a
down server fails the run at start with the URL in the message, not in the middle of training.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import torch

from vgrpo.rewards.pil import to_pil_images

DEFAULT_TEMPLATE = (
    "You are given a text caption and an image generated from it. Rate how well the image matches "
    "the caption and its overall quality on a scale from 1 to 5.\nCaption: {prompt}\n"
    "Answer with one line: Final Score: <number>"
)
_SCORE = re.compile(r"Final Score:\s*([-+]?\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


class JudgeUnavailableError(ConnectionError):
    """The judge endpoint cannot be reached or keeps failing."""


def parse_score(text: str) -> float:
    """The number after 'Final Score:', else the first number in `text`; ValueError if none."""
    match = _SCORE.search(text) or _NUMBER.search(text)
    if match is None:
        raise ValueError(f"judge reply has no score: {text[:200]!r}")
    return float(match.group(1) if match.re is _SCORE else match.group(0))


class HttpJudgeReward:
    """Scores each (image, prompt) with a chat-completions call.

    Args:
        url: base URL of the OpenAI-compatible API, e.g. "http://127.0.0.1:8000/v1".
        model: the served model name.
        name: reward name in logs (e.g. "unifiedreward").
        template: user message; "{prompt}" is replaced by the prompt.
        timeout: seconds per request; retries: extra attempts per request; max_workers: concurrency.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str,
        name: str = "http_judge",
        template: str = DEFAULT_TEMPLATE,
        timeout: float = 60.0,
        retries: int = 3,
        max_workers: int = 8,
        api_key: str | None = None,
        check_endpoint: bool = True,
    ):
        self.url = url.rstrip("/")
        self.model = model
        self.name = name
        self.template = template
        self.timeout = timeout
        self.retries = retries
        self.max_workers = max_workers
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        if check_endpoint:
            self.check_endpoint()

    def check_endpoint(self) -> None:
        """GET {url}/models; raise JudgeUnavailableError naming the URL if it does not answer."""
        request = urllib.request.Request(f"{self.url}/models", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=min(self.timeout, 10.0)) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise JudgeUnavailableError(f"judge endpoint {self.url} is not reachable: {exc}") from exc

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1], B prompts -> [B] float32 scores."""
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{self.name}: {images.shape[0]} images but {len(prompts)} prompts")
        encoded = [_png_data_url(im) for im in to_pil_images(images)]
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            scores = list(pool.map(self._score_one, encoded, prompts))
        return torch.tensor(scores, dtype=torch.float32)

    def _score_one(self, image_url: str, prompt: str) -> float:
        body = {
            "model": self.model,
            "temperature": 0.0,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": image_url}},
                        {"type": "text", "text": self.template.format(prompt=prompt)},
                    ],
                }
            ],
        }
        data = json.dumps(body).encode()
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            request = urllib.request.Request(f"{self.url}/chat/completions", data=data, headers=self.headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    reply = json.loads(response.read())
                return parse_score(reply["choices"][0]["message"]["content"])
            except urllib.error.HTTPError as exc:
                last_error = exc
                if exc.code < 500 and exc.code != 429:  # a client error will not go away on retry
                    break
            except (urllib.error.URLError, OSError, KeyError, IndexError, json.JSONDecodeError) as exc:
                last_error = exc
        raise JudgeUnavailableError(f"judge {self.url} failed after {self.retries + 1} attempts: {last_error}")


def _png_data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
