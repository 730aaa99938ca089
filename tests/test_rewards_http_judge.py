"""The HTTP VLM judge against local OpenAI-compatible stub servers on 127.0.0.1.

Every stub stops by itself: bounded loops, servers shut down when the test leaves its block.
"""

import contextlib
import json
import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from vgrpo.rewards import http_judge
from vgrpo.rewards.base import RewardSet
from vgrpo.rewards.http_judge import HttpJudgeReward, JudgeUnavailableError, parse_score

KEY_VAR = "VGRPO_TEST_JUDGE_KEY"
KEY = "sk-test-5ecret-a1b2c3"


class _Judge(BaseHTTPRequestHandler):
    """Scores a prompt by its length mod 5 + 1; fails the first `failures` completions with `failure_code`.

    Every POST is recorded as (path, Authorization header, request JSON) in `posts`.
    """

    failures = 0
    failure_code = 503
    posts: list = []
    gets: list = []

    def log_message(self, *args):
        pass

    def _send(self, code, payload, headers=()):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        type(self).gets.append((self.path, self.headers.get("Authorization")))
        self._send(200, {"data": [{"id": "judge"}]})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).posts.append((self.path, self.headers.get("Authorization"), request))
        if type(self).failures > 0:
            type(self).failures -= 1
            self._send(type(self).failure_code, {"error": "busy"})
            return
        content = request["messages"][0]["content"]
        assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
        self.reply(content[1]["text"])

    def reply(self, text):
        caption = text.split("Caption: ")[1].split("\n")[0]
        self._send(200, {"choices": [{"message": {"content": f"Good.\nFinal Score: {len(caption) % 5 + 1}"}}]})


def judge_class(**attrs):
    """A fresh _Judge subclass (its own request logs) with `attrs` set or overridden."""
    return type("Judge", (_Judge,), {"posts": [], "gets": [], **attrs})


@contextlib.contextmanager
def serve(handler):
    """A threaded server on 127.0.0.1 (free port); yields (handler class, "http://127.0.0.1:PORT")."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def sleeps(monkeypatch):
    """The backoff sleeps of the judge, recorded instead of slept."""
    calls = []
    monkeypatch.setattr(http_judge.time, "sleep", calls.append)
    return calls


def images(n):
    return torch.rand(n, 3, 8, 8)


def test_scores_each_image_with_its_prompt_concurrently():
    prompts = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]
    with serve(judge_class()) as (judge_cls, url):
        judge = HttpJudgeReward(url + "/v1", model="judge", name="unifiedreward", max_workers=3)
        scores = judge(images(6), prompts)
    torch.testing.assert_close(scores, torch.tensor([len(p) % 5 + 1 for p in prompts], dtype=torch.float32))
    assert len(judge_cls.posts) == 6 and judge_cls.posts[0][2]["model"] == "judge"
    assert judge_cls.posts[0][1] is None  # no key configured: no Authorization header


def test_transient_server_errors_are_retried(sleeps):
    with serve(judge_class(failures=2)) as (judge_cls, url):
        judge = HttpJudgeReward(url + "/v1", model="judge", retries=3)
        assert judge(images(1), ["abc"]).item() == 4.0
    assert len(judge_cls.posts) == 3 and sleeps == [0.5, 1.0]


def test_http_500_is_retried_for_the_whole_batch_at_once(sleeps):
    """16 images, the first 16 requests fail: one backoff, 32 requests, all valid; no image-by-image rescoring."""
    prompts = [f"prompt {i}" for i in range(16)]
    with serve(judge_class(failures=16, failure_code=500)) as (judge_cls, url):
        rewards = RewardSet([HttpJudgeReward(url + "/v1", model="judge", retries=3)])
        out = rewards(images(16), prompts)
    assert bool(out.valid.all()) and len(judge_cls.posts) == 32 and sleeps == [0.5]


def test_persistent_failure_scores_nan_without_per_image_retries(sleeps, caplog):
    with serve(judge_class(failures=10_000, failure_code=500)) as (judge_cls, url):
        rewards = RewardSet([HttpJudgeReward(url + "/v1", model="judge", retries=2)])
        with caplog.at_level(logging.WARNING):
            out = rewards(images(16), [f"p{i}" for i in range(16)])
    assert not bool(out.valid.any())
    assert len(judge_cls.posts) == 16 * 3 and sleeps == [0.5, 1.0]  # 3 rounds of the whole batch, no more
    assert "16 of 16 images have no valid score (HTTP 500)" in caplog.text and url in caplog.text
    assert "one by one" not in caplog.text  # the RewardSet fallback never ran


def test_endpoint_down_fails_at_construction_with_the_url():
    url = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    with pytest.raises(JudgeUnavailableError, match=r"judge endpoint http://127.0.0.1:9/v1 is not reachable"):
        HttpJudgeReward(url, model="judge", timeout_s=2)


def test_redirect_to_another_origin_is_not_followed_and_gets_no_key(monkeypatch, caplog):
    monkeypatch.setenv(KEY_VAR, KEY)
    with serve(judge_class()) as (other_cls, other):

        class Redirecting(_Judge):
            posts: list = []

            def reply(self, text):
                self._send(307, {}, headers=[("Location", f"{other}/v1/chat/completions")])

        with serve(Redirecting) as (judge_cls, url):
            judge = HttpJudgeReward(url + "/v1", model="judge", api_key_env=KEY_VAR)
            with caplog.at_level(logging.WARNING):
                score = judge(images(1), ["abc"])
    assert math.isnan(score.item())
    assert judge_cls.posts[0][1] == f"Bearer {KEY}"  # the key went to the configured origin only
    assert other_cls.posts == [] and other_cls.gets == []
    assert "redirect to another origin" in caplog.text and KEY not in caplog.text


def test_redirect_of_the_endpoint_check_to_another_origin_fails_construction(monkeypatch):
    monkeypatch.setenv(KEY_VAR, KEY)
    with serve(judge_class()) as (other_cls, other):

        class Redirecting(_Judge):
            def do_GET(self):
                self._send(302, {}, headers=[("Location", f"{other}/v1/models")])

        with serve(Redirecting) as (_, url):
            with pytest.raises(JudgeUnavailableError, match="another origin") as info:
                HttpJudgeReward(url + "/v1", model="judge", api_key_env=KEY_VAR)
    assert other_cls.gets == [] and KEY not in str(info.value)


def test_same_origin_redirect_is_followed():
    class Moved(_Judge):
        posts: list = []

        def do_POST(self):
            if self.path.startswith("/v1/"):
                self.rfile.read(int(self.headers["Content-Length"]))
                self._send(308, {}, headers=[("Location", "/v2/chat/completions")])
            else:
                super().do_POST()

    with serve(Moved) as (judge_cls, url):
        judge = HttpJudgeReward(url + "/v1", model="judge")
        assert judge(images(1), ["abc"]).item() == 4.0
    assert [p[0] for p in judge_cls.posts] == ["/v2/chat/completions"]


def test_one_deadline_per_request_against_a_dripping_server():
    """A byte every 0.1 s for 10 s: the 1 s deadline ends the request, not each read's timeout."""

    class Drip(_Judge):
        def reply(self, text):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(100):
                    self.wfile.write(b" ")
                    time.sleep(0.1)

    with serve(Drip) as (_, url):
        judge = HttpJudgeReward(url + "/v1", model="judge", timeout_s=1.0, retries=0)
        start = time.monotonic()
        score = judge(images(1), ["abc"])
        elapsed = time.monotonic() - start
    assert math.isnan(score.item()) and elapsed < 5.0


@pytest.mark.parametrize("declared", [True, False])
def test_reply_body_is_capped(declared, caplog):
    """A 200 MB Content-Length is refused unread; an undeclared 4 MB body stops being read at the cap."""

    class Huge(_Judge):
        def reply(self, text):
            self.send_response(200)
            if declared:
                self.send_header("Content-Length", str(200 * 2**20))
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(64):  # 4 MiB at most
                    self.wfile.write(b"x" * 65536)

    with serve(Huge) as (_, url):
        judge = HttpJudgeReward(url + "/v1", model="judge", max_response_bytes=65536, retries=0)
        with caplog.at_level(logging.WARNING):
            assert math.isnan(judge(images(1), ["abc"]).item())
    assert ("more than 65536" if declared else "longer than 65536 bytes") in caplog.text


def test_scores_outside_the_range_are_invalid():
    replies = {"a": "Final Score: 1e30", "b": "Final Score: -3", "c": "Final Score: 7", "d": "Final Score: 4.5",
               "e": "Final Score: nan", "f": "I cannot rate this", "g": "Final Score: 1", "h": "Final Score: 5.0"}

    class Ranged(_Judge):
        def reply(self, text):
            self._send(200, {"choices": [{"message": {"content": replies[text.split("Caption: ")[1][0]]}}]})

    with serve(Ranged) as (_, url):
        judge = HttpJudgeReward(url + "/v1", model="judge", score_min=1, score_max=5, retries=0)
        scores = judge(images(len(replies)), list(replies))
    assert [None if math.isnan(s) else s for s in scores.tolist()] == [None, None, None, 4.5, None, None, 1.0, 5.0]


@pytest.mark.parametrize("url", ["http://user:{key}@127.0.0.1:9/v1", "http://127.0.0.1:9/v1?api_key={key}",
                                 "http://{key}@127.0.0.1:9/v1"])
def test_key_in_the_url_is_refused_and_never_echoed(url, tmp_path):
    from vgrpo.trainer.config import Config, ConfigError, apply_overrides, validate

    url = url.format(key=KEY)
    with pytest.raises(ValueError) as info:
        HttpJudgeReward(url, model="judge", check_endpoint=False)
    assert KEY not in str(info.value) and "api_key_env" in str(info.value)
    cfg = apply_overrides(Config(), [f"--job.output_dir={tmp_path}", "--reward.names=unifiedreward",
                                     f"--reward.paths={url}"])
    with pytest.raises(ConfigError, match=r"reward.paths\[0\]: endpoint http://127.0.0.1:9/v1 \(redacted\)") as info:
        validate(cfg)
    assert KEY not in str(info.value)
    assert not (tmp_path / "shapes-cpu").exists()  # refused before a run folder (config.json) exists


def test_judge_options_are_validated(tmp_path, monkeypatch):
    from vgrpo.trainer.config import Config, ConfigError, apply_overrides, validate

    monkeypatch.delenv(KEY_VAR, raising=False)
    cfg = apply_overrides(Config(), [
        f"--job.output_dir={tmp_path}", "--reward.names=http_judge", "--reward.paths=http://127.0.0.1:9/v1",
        "--reward.judge.template=Rate it", "--reward.judge.score_min=5", "--reward.judge.score_max=1",
        f"--reward.judge.api_key_env={KEY_VAR}", "--reward.judge.timeout_s=0",
    ])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    msg = str(info.value)
    assert "reward.judge.template must contain {prompt}" in msg
    assert "reward.judge.score_min (5.0) must be < reward.judge.score_max (1.0)" in msg
    assert f"reward.judge.api_key_env names {KEY_VAR}, which is not set" in msg
    assert "reward.judge.timeout_s must be > 0" in msg
    with pytest.raises(ValueError, match="not set in the environment"):
        HttpJudgeReward("http://127.0.0.1:9/v1", model="judge", api_key_env=KEY_VAR, check_endpoint=False)
    # the key itself given where its variable's name belongs is refused without being echoed
    cfg.reward.judge.api_key_env = KEY
    with pytest.raises(ConfigError, match="must be the NAME of an environment variable") as info:
        validate(cfg)
    assert KEY not in str(info.value)


def test_trainer_sends_the_judge_options_and_never_writes_the_key(tmp_path, monkeypatch, caplog):
    """One training iteration scored by the judge: model, template and key come from the config."""
    from tests.trainer_setups import tiny_adapter, tiny_config
    from vgrpo.trainer.config import apply_overrides
    from vgrpo.trainer.trainer import Trainer

    monkeypatch.setenv(KEY_VAR, KEY)
    counter = iter(range(10_000))

    class Varied(_Judge):
        posts: list = []

        def reply(self, text):
            self._send(200, {"choices": [{"message": {"content": f"Final Score: {next(counter) % 5 + 1}"}}]})

    with serve(Varied) as (judge_cls, url):
        cfg = apply_overrides(tiny_config(tmp_path, job=dict(iterations=1)), [
            "--reward.names=unifiedreward", f"--reward.paths={url}/v1", "--reward.judge.model=my-judge",
            "--reward.judge.template=Caption: {prompt}\nFinal Score?", f"--reward.judge.api_key_env={KEY_VAR}",
        ])
        with caplog.at_level(logging.DEBUG):
            Trainer(cfg, adapter_factory=tiny_adapter).train()
    assert len(judge_cls.posts) == 8
    for _, auth, request in judge_cls.posts:
        assert auth == f"Bearer {KEY}" and request["model"] == "my-judge"
        assert request["messages"][0]["content"][1]["text"].endswith("\nFinal Score?")
    run_dir = tmp_path / "run"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["reward"]["judge"]["api_key_env"] == KEY_VAR
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in caplog.text
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["valid_fraction"] == 1.0 and rows[-1]["skipped_iteration"] == 0.0


def test_parse_score_prefers_the_final_score_line():
    assert parse_score("I see 3 shapes. Final Score: 4.5") == 4.5
    assert parse_score("score 2") == 2.0
    assert parse_score("Final Score: 1e30") == 1e30
    with pytest.raises(ValueError, match="no score"):
        parse_score("excellent")
