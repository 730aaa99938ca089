"""The HTTP VLM judge against a local OpenAI-compatible stub server on loopback."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from vgrpo.rewards.http_judge import HttpJudgeReward, JudgeUnavailableError, parse_score


class _Judge(BaseHTTPRequestHandler):
    """Scores a prompt by its length mod 5 + 1; fails the first `failures` completions with 503."""

    failures = 0
    requests: list = []

    def log_message(self, *args):
        pass

    def _send(self, code, payload):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, {"data": [{"id": "judge"}]})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(request)
        if type(self).failures > 0:
            type(self).failures -= 1
            self._send(503, {"error": "busy"})
            return
        content = request["messages"][0]["content"]
        assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
        caption = content[1]["text"].split("Caption: ")[1].split("\n")[0]
        self._send(200, {"choices": [{"message": {"content": f"Good.\nFinal Score: {len(caption) % 5 + 1}"}}]})


@pytest.fixture()
def server():
    _Judge.failures = 0
    _Judge.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_scores_each_image_with_its_prompt_concurrently(server):
    prompts = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]
    judge = HttpJudgeReward(server, model="judge", name="unifiedreward", max_workers=3)
    scores = judge(torch.rand(6, 3, 8, 8), prompts)
    torch.testing.assert_close(scores, torch.tensor([len(p) % 5 + 1 for p in prompts], dtype=torch.float32))
    assert len(_Judge.requests) == 6 and _Judge.requests[0]["model"] == "judge"


def test_transient_server_errors_are_retried(server):
    _Judge.failures = 2
    judge = HttpJudgeReward(server, model="judge", retries=3)
    assert judge(torch.rand(1, 3, 8, 8), ["abc"]).item() == 4.0
    assert len(_Judge.requests) == 3


def test_persistent_failure_raises_naming_the_endpoint(server):
    _Judge.failures = 100
    judge = HttpJudgeReward(server, model="judge", retries=1)
    with pytest.raises(JudgeUnavailableError, match="failed after 2 attempts"):
        judge(torch.rand(1, 3, 8, 8), ["abc"])


def test_endpoint_down_fails_at_construction_with_the_url():
    url = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    with pytest.raises(JudgeUnavailableError, match=r"judge endpoint http://127.0.0.1:9/v1 is not reachable"):
        HttpJudgeReward(url, model="judge", timeout=2)


def test_parse_score_prefers_the_final_score_line():
    assert parse_score("I see 3 shapes. Final Score: 4.5") == 4.5
    assert parse_score("score 2") == 2.0
    with pytest.raises(ValueError, match="no score"):
        parse_score("excellent")
