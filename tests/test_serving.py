"""`rewardlab serve` as a real process on 127.0.0.1: rewards over HTTP equal the in-process scorer's, concurrent
requests get the rewards sequential ones get, and every malformed or oversized request is refused with a 4xx
and a message."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from test_score_command import MESSAGES_PROMPT, MESSAGES_RESPONSE, save_reward_models

from rewardlab.scorer import load_scorer

HOST = "127.0.0.1"
MAX_BATCH, MAX_LENGTH, MAX_BYTES = 8, 96, 4096
STARTUP_SECONDS = 180
TEXTS = ["Human: What is the capital of France? Assistant: Paris.", "Human: hi Assistant: hello",
         "Human: Tell me a joke. Assistant: Why did the chicken cross the road?", "Thank you for asking!",
         "I am sorry, I cannot help with that.", "Human: How can I stay healthy? Assistant: Sleep well."]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def request(port: int, path: str, body=None, method: str = "POST", headers=None) -> tuple[int, dict]:
    """(status, JSON reply); `body` bytes as they are, an iterator of bytes (sent chunked), or JSON."""
    data = body if isinstance(body, bytes) or hasattr(body, "__next__") else (
        None if body is None else json.dumps(body).encode())
    call = urllib.request.Request(f"http://{HOST}:{port}{path}", data=data, method=method,
                                  headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(call, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return save_reward_models(tmp_path_factory.mktemp("served_models"))


@pytest.fixture(scope="module")
def scorer(models):
    return load_scorer(models["reward_model"], max_length=MAX_LENGTH, device="cpu")


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    """The port of a `python -m rewardlab serve` process (default host), stopped with its process group."""
    port, log_path = free_port(), tmp_path_factory.mktemp("server") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "rewardlab", "serve", "--model", str(models["reward_model"]), "--port",
               str(port), "--max-batch", str(MAX_BATCH), "--max-length", str(MAX_LENGTH), "--max-request-bytes",
               str(MAX_BYTES), "--batch-size", "4", "--device", "cpu"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=log_path.parent, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, f"the server exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no /health within {STARTUP_SECONDS}s:\n{log_path.read_text()}"
            try:
                if request(port, "/health", method="GET")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        yield port, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def test_health_on_the_loopback_address_by_default(server, models):
    port, log_path = server
    status, health = request(port, "/health", method="GET")
    assert status == 200 and health["status"] == "ok"
    assert health["model"] == str(models["reward_model"]) and health["kind"] == "reward model"
    assert (health["max_batch"], health["max_length"], health["max_request_bytes"]) == (MAX_BATCH, MAX_LENGTH,
                                                                                         MAX_BYTES)
    assert f"Uvicorn running on http://{HOST}:{port}" in log_path.read_text()


def test_rewards_over_http_equal_the_scorer(server, scorer, models):
    port, _ = server
    tokenizer = models["tokenizer"]
    # OpenRLHF's contract: whole texts in `query`; the padding and EOS of a policy's decoding are left out.
    queries = TEXTS[:3] + [tokenizer.pad_token * 2 + TEXTS[3] + tokenizer.eos_token + tokenizer.pad_token]
    status, reply = request(port, "/get_reward", {"query": queries, "prompts": ["unused"] * 4, "labels": None})
    assert status == 200, reply
    np.testing.assert_allclose(reply["rewards"], scorer.score_texts(TEXTS[:4]), atol=1e-5)

    prompts = ["Human: hi", "Human: Tell me a joke.", MESSAGES_PROMPT]
    responses = [" hello", " Why did the chicken cross the road?", MESSAGES_RESPONSE]
    status, reply = request(port, "/score", {"prompts": prompts, "responses": responses})
    assert status == 200, reply
    np.testing.assert_allclose(reply["rewards"], scorer.score(prompts, responses), atol=1e-5)

    # One request holds plain pairs or chat pairs, as a pair table does (rewardlab.schema).
    for pairs in ([{"prompt": "Human: hi", "chosen": " hello there", "rejected": " go away"},
                   {"prompt": "Human: Tell me a joke.", "chosen": " Why did the chicken...", "rejected": " No."}],
                  [{"prompt": MESSAGES_PROMPT, "chosen": MESSAGES_RESPONSE,
                    "rejected": [{"role": "assistant", "content": "No."}]}]):
        status, reply = request(port, "/score_pairs", {"pairs": pairs})
        assert status == 200, reply
        chosen, rejected = scorer.score_pairs(*([pair[key] for pair in pairs] for key in ("prompt", "chosen",
                                                                                           "rejected")))
        np.testing.assert_allclose(reply["reward_chosen"], chosen, atol=1e-5)
        np.testing.assert_allclose(reply["reward_rejected"], rejected, atol=1e-5)


def test_concurrent_requests_get_the_sequential_rewards(server):
    port, _ = server
    bodies = [{"query": [TEXTS[(i + j) % len(TEXTS)] for j in range(1 + i % 4)]} for i in range(8)]
    sequential = [request(port, "/get_reward", body) for body in bodies]
    assert all(status == 200 for status, _ in sequential)

    def client(index: int) -> list[list[float]]:
        replies = [request(port, "/get_reward", bodies[index]) for _ in range(5)]
        assert all(status == 200 for status, _ in replies), replies
        return [reply["rewards"] for _, reply in replies]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [future.result(timeout=120) for future in [pool.submit(client, i) for i in range(8)]]
    assert time.monotonic() - started < 120
    for index, rewards in enumerate(results):
        for reply in rewards:
            np.testing.assert_allclose(reply, sequential[index][1]["rewards"], rtol=0, atol=1e-6)


def chunks(size: int):
    body = json.dumps({"query": ["x" * size]}).encode()
    yield from (body[start:start + 1000] for start in range(0, len(body), 1000))


BAD_REQUESTS = [
    ("/get_reward", b'{"query": ["a"', 400, "the body is not valid JSON"),
    ("/get_reward", b"\xff\xfe", 400, "the body is not valid JSON"),
    ("/get_reward", [1, 2], 422, "the body must be a JSON object with 'query', got list"),
    ("/get_reward", {}, 422, "'query' is missing"),
    ("/get_reward", {"query": "one text"}, 422, "'query' must be a list, got a string"),
    ("/get_reward", {"query": ["fine", 3]}, 422, "query[1] must be a string, got int"),
    ("/get_reward", {"query": []}, 422, "'query' is empty: nothing to score"),
    ("/get_reward", {"query": ["<pad></s>"]}, 422, "query[0] is empty: nothing to score"),
    ("/get_reward", {"query": ["fine"], "qurey": 1}, 422, "unknown key(s) ['qurey']"),
    ("/get_reward", {"query": ["a"] * (MAX_BATCH + 1)}, 413, f"9 items, over the limit of {MAX_BATCH} per request"),
    ("/get_reward", {"query": ["x" * MAX_BYTES]}, 413, f"over the limit of {MAX_BYTES} bytes"),
    ("/get_reward", chunks(MAX_BYTES), 413, f"over the limit of {MAX_BYTES} bytes"),
    ("/get_reward", {"query": ["fine", "Human: " + "how are you today? " * 40]}, 422,
     f"query[1] does not fit in {MAX_LENGTH} tokens (--max-length)"),
    ("/score", {"prompts": ["a", "b"], "responses": ["c"]}, 422, "2 prompts for 1 responses"),
    ("/score", {"prompts": ["a"]}, 422, "'responses' is missing"),
    ("/score", {"prompts": [[{"role": "user"}]], "responses": [" x"]}, 422,
     "request, item 0, field 'prompt': message 0 is not a {'role': str, 'content': str} mapping"),
    ("/score", {"prompts": ["a", MESSAGES_PROMPT], "responses": [" b", " plain"]}, 422,
     "request, item 1, field 'response': plain response with a conversational prompt"),
    ("/score", {"prompts": [""], "responses": [" "]}, 422, "item 0, field 'response': empty, and so is the prompt"),
    ("/score", {"prompts": ["Human: " + "tell me more " * 50], "responses": [" ok"]}, 422,
     f"prompts[0] does not fit in {MAX_LENGTH} tokens"),
    ("/score_pairs", {"pairs": ["not a pair"]}, 422, "pairs[0] must be an object with prompt, chosen and rejected"),
    ("/score_pairs", {"pairs": [{"prompt": "p", "chosen": " same", "rejected": " same"}]}, 422,
     "request, item 0, field 'rejected': identical to chosen"),
    ("/score_pairs", {"pairs": [{"prompt": "p", "chosen": " a"}]}, 422, "item 0, field 'rejected': missing"),
]


@pytest.mark.parametrize("path, body, status, message", BAD_REQUESTS,
                         ids=[f"{path}-{index}" for index, (path, *_) in enumerate(BAD_REQUESTS)])
def test_bad_requests_are_refused_with_a_message(server, path, body, status, message):
    port, _ = server
    headers = {"Transfer-Encoding": "chunked"} if hasattr(body, "__next__") else None
    got, reply = request(port, path, body, headers=headers)
    assert (got, message in reply["detail"]) == (status, True), reply


def test_the_server_still_answers_after_refusals(server):
    port, _ = server
    assert request(port, "/get_reward", method="GET")[0] == 405
    status, reply = request(port, "/get_reward", {"query": TEXTS[:1]})
    assert status == 200 and len(reply["rewards"]) == 1
