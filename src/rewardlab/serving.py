"""`rewardlab serve --model SOURCE`: a reward model behind HTTP (FastAPI, one uvicorn worker).

Endpoints (JSON in, JSON out; errors are `{"detail": "<message>"}` with a 4xx status):

- `POST /get_reward` `{"query": ["<prompt and response as one text>", ...]}` -> `{"rewards": [...]}`: OpenRLHF's
  remote reward model contract (`--remote_rm_url http://host:port/get_reward`); its `prompts` and `labels`
  keys are accepted and not used. Each text is scored whole, as one sequence, after removing the padding and
  end-of-sequence tokens that a policy's decoding leaves at its ends (the project's models are trained on texts
  without them).
- `POST /score` `{"prompts": [...], "responses": [...]}` -> `{"rewards": [...]}`: plain text or chat messages.
- `POST /score_pairs` `{"pairs": [{"prompt": ..., "chosen": ..., "rejected": ...}, ...]}` ->
  `{"reward_chosen": [...], "reward_rejected": [...]}`.
- `GET /health` -> `{"status": "ok", "model": ..., "kind": ..., limits}`.

Limits: a body over `max_request_bytes` (413), more than `max_batch` items (413), a text that does not fit in
`max_length` tokens (422: served rewards are never read from a cut sequence), malformed JSON (400), wrong
keys, types or empty inputs (422). The forward pass runs in a worker thread, one request at a time
(`rewardlab.scorer.Scorer` holds a lock), so the event loop keeps answering while a batch is scored.
"""

import json
from typing import Any

import click

from rewardlab.commands import model_loading_options

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024


def strip_decoding_tokens(text: str, tokenizer) -> str:
    """The text without pad tokens at either end and end-of-sequence tokens at its end."""
    pad, eos = getattr(tokenizer, "pad_token", None), getattr(tokenizer, "eos_token", None)
    changed = True
    while changed:
        before = text
        if pad:
            text = text.removeprefix(pad).removesuffix(pad)
        if eos:
            text = text.removesuffix(eos)
        changed = text != before
    return text


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _describe(value: Any) -> str:
    from rewardlab.schema import describe

    return "a string" if isinstance(value, str) else describe(value)


def _items(body: Any, key: str, allowed: set[str], max_batch: int) -> list:
    """body[key], a non-empty list of at most max_batch items, in a JSON object with no other keys than allowed."""
    if not isinstance(body, dict):
        raise RequestError(422, f"the body must be a JSON object with '{key}', got {_describe(body)}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(422, f"unknown key(s) {unknown}; expected {sorted(allowed)}")
    if key not in body:
        raise RequestError(422, f"'{key}' is missing")
    items = body[key]
    if not isinstance(items, list):
        raise RequestError(422, f"'{key}' must be a list, got {_describe(items)}")
    if not items:
        raise RequestError(422, f"'{key}' is empty: nothing to score")
    if len(items) > max_batch:
        raise RequestError(413, f"'{key}' has {len(items)} items, over the limit of {max_batch} per request "
                                "(--max-batch)")
    return items


def create_app(scorer, max_batch: int = DEFAULT_MAX_BATCH, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
    """The FastAPI app serving `scorer` (a `rewardlab.scorer.Scorer`)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    from rewardlab.schema import DataValidationError
    from rewardlab.scorer import TooLongError, response_rows

    app = FastAPI(title="RewardLab reward model", description=__doc__.split("\n\n")[0])
    limits = {"max_batch": max_batch, "max_request_bytes": max_request_bytes, "max_length": scorer.max_length}

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status)

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_request_bytes:
            # Refused before reading: an oversized body is never held in memory.
            raise RequestError(413, f"request body of {declared} bytes is over the limit of {max_request_bytes} "
                                    "bytes (--max-request-bytes)")
        body = bytearray()
        async for chunk in request.stream():  # also bounds bodies sent without a Content-Length
            body += chunk
            if len(body) > max_request_bytes:
                raise RequestError(413, f"request body is over the limit of {max_request_bytes} bytes "
                                        "(--max-request-bytes)")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(400, f"the body is not valid JSON: {error}") from None

    async def run_scoring(key: str, function, *args) -> Any:
        try:
            return await run_in_threadpool(function, *args, refuse_cut=True)
        except TooLongError as error:
            raise RequestError(422, f"{key}[{error.index}] does not fit in {error.max_length} tokens "
                                    "(--max-length)") from None
        except DataValidationError as error:
            raise RequestError(422, str(error)) from None

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **scorer.describe(), **limits}

    @app.post("/get_reward")
    async def get_reward(request: Request) -> dict:
        queries = _items(await read_json(request), "query", {"query", "prompts", "labels"}, max_batch)
        texts = []
        for index, query in enumerate(queries):
            if not isinstance(query, str):
                raise RequestError(422, f"query[{index}] must be a string, got {_describe(query)}")
            texts.append(strip_decoding_tokens(query, scorer.tokenizer))
            if not texts[-1].strip():
                raise RequestError(422, f"query[{index}] is empty: nothing to score")
        rewards = await run_scoring("query", scorer.score_texts, texts)
        return {"rewards": rewards.tolist()}

    @app.post("/score")
    async def score(request: Request) -> dict:
        body = await read_json(request)
        prompts = _items(body, "prompts", {"prompts", "responses"}, max_batch)
        responses = _items(body, "responses", {"prompts", "responses"}, max_batch)
        if len(prompts) != len(responses):
            raise RequestError(422, f"{len(prompts)} prompts for {len(responses)} responses")
        try:
            prompts, responses = response_rows([{"prompt": p, "response": r} for p, r in zip(prompts, responses)],
                                               "request", unit="item")
        except DataValidationError as error:
            raise RequestError(422, str(error)) from None
        rewards = await run_scoring("prompts", scorer.score, prompts, responses)
        return {"rewards": rewards.tolist()}

    @app.post("/score_pairs")
    async def score_pairs(request: Request) -> dict:
        from rewardlab.adapters import pairs_from_records

        pairs = _items(await read_json(request), "pairs", {"pairs"}, max_batch)
        for index, pair in enumerate(pairs):
            if not isinstance(pair, dict):
                raise RequestError(422, f"pairs[{index}] must be an object with prompt, chosen and rejected, "
                                        f"got {_describe(pair)}")
        try:
            frame, _ = pairs_from_records(pairs, "pairs", "request", "fail", unit="item")
        except DataValidationError as error:
            raise RequestError(422, str(error)) from None
        chosen, rejected = await run_scoring("pairs", scorer.score_frame, frame)
        return {"reward_chosen": chosen.tolist(), "reward_rejected": rejected.tolist()}

    return app


@click.command("serve")
@click.option("--model", "source", required=True,
              help="Reward model or ensemble directory, exported model directory, or MLflow URI "
                   "(models:/<name>/<version>, runs:/<run_id>/reward_model).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 exposes the model to the whole network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-batch", default=DEFAULT_MAX_BATCH, show_default=True, type=click.IntRange(min=1),
              help="Most texts (or pairs) in one request.")
@click.option("--max-request-bytes", default=DEFAULT_MAX_REQUEST_BYTES, show_default=True,
              type=click.IntRange(min=1), help="Largest request body.")
@click.option("--max-length", default=512, show_default=True, type=click.IntRange(min=1),
              help="Tokens per scored sequence; a text that does not fit is refused (422), never cut.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Sequences per forward pass.")
@model_loading_options
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(source: str, host: str, port: int, max_batch: int, max_request_bytes: int, max_length: int,
          batch_size: int, device: str, dtype: str | None, tracking_uri: str | None, log_level: str) -> None:
    """Serve a reward model over HTTP: POST /get_reward (OpenRLHF), /score, /score_pairs; GET /health."""
    import uvicorn

    from rewardlab.errors import ExpectedError
    from rewardlab.scorer import load_scorer

    try:
        scorer = load_scorer(source, batch_size=batch_size, max_length=max_length, device=device, dtype=dtype,
                             tracking_uri=tracking_uri)
    except (ExpectedError, FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Serving {scorer.source} ({scorer.kind}) on http://{host}:{port}", err=True)
    # One worker: the model is loaded once, and its lock orders concurrent requests.
    uvicorn.run(create_app(scorer, max_batch, max_request_bytes), host=host, port=port, log_level=log_level,
                workers=1)
