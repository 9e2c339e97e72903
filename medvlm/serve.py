"""Serve a model medvlm runs in-process through an OpenAI-compatible API, for several apps and other OpenAI tools.

    python -m medvlm.serve --model medvlm-tiny --port 8000
    python -m medvlm.serve --model llava-1.5-7b --adapter runs/pathvqa/adapter --device cuda --host 0.0.0.0
    python app.py --model openai:http://127.0.0.1:8000/v1 --served_model medvlm-tiny      # an app using it

GET /v1/models lists the one model; POST /v1/chat/completions answers (with "stream": true, as server-sent events).
Requests that arrive together, or while the model is busy, are decoded together, up to --max_batch at once
(medvlm.predict);
beyond --max_waiting queued requests the server answers 429. With MEDVLM_SERVE_API_KEY set, every request must
carry "Authorization: Bearer <that key>". Errors are OpenAI's JSON: {"error": {"message", "type", "param", "code"}}.

What it takes: text and image_url parts, the image as a base64 data URL (it fetches no URLs) on the first user
message, at most one; max_tokens (or max_completion_tokens), temperature (default 0: greedy), stream, logprobs
and top_logprobs (0 to 20). System messages are ignored: each model family has its own system prompt. Answers stop
at the family's end of turn. logprobs cover the answer's first token only (what a yes/no answer's confidence needs,
medvlm.answers) and only greedy answers; a sampled answer's are null.
"""
import argparse
import asyncio
import base64
import binascii
import hmac
import logging
import os
import queue
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from medvlm import cli
from medvlm.errors import UserFacingError
from medvlm.images import load_image
from medvlm.settings import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    HOST,
    MAX_NEW_TOKENS_LIMIT,
    MAX_UPLOAD_BYTES,
    SERVE_BATCH_WINDOW_S,
    SERVE_MAX_BATCH,
    SERVE_MAX_WAITING,
    SERVE_PORT,
)

if TYPE_CHECKING:  # medvlm.chat (torch, transformers) is imported where a request is read, so a bad flag answers at once
    from medvlm.chat import GenerationSettings

PROG = "python -m medvlm.serve"
API_KEY_ENV = "MEDVLM_SERVE_API_KEY"
log = logging.getLogger("medvlm.serve")


class ApiError(Exception):
    """An OpenAI-style error response."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, " ".join(message.split()), kind, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class Job:
    """One request: what to decode, and where its answer goes (an asyncio queue on the server's event loop)."""

    inputs: dict  # the processor's inputs for this conversation alone (built while fitting it into the context)
    image: object
    settings: "GenerationSettings"
    loop: asyncio.AbstractEventLoop
    answers: asyncio.Queue = field(default_factory=asyncio.Queue)
    left: bool = False  # the client went away: stop decoding its row
    prompt_tokens: int = 0
    batch: int = 0  # how many requests it was decoded with (the X-Medvlm-Batch header of a whole answer)
    top_logprobs: int | None = None  # None: no logprobs asked for
    first_token: list | None = None  # (text, logprob) of the answer's likeliest first tokens, from the decoding thread

    def tell(self, text: str | None, finish: str | None, error: str | None = None, top: list | None = None) -> bool:
        """From the decoding thread: the answer so far (finish None), the final answer (finish "stop"/"length"),
        or an error; top: the first token's likeliest alternatives, when asked for. -> whether the client left."""
        self.first_token = self.first_token or top
        self.loop.call_soon_threadsafe(self.answers.put_nowait, (text, finish, error))
        return self.left

    def logprobs(self) -> dict | None:
        """OpenAI's choice.logprobs for the answer's first token; None when not asked for or not measured."""
        if self.top_logprobs is None or not self.first_token:
            return None
        def entry(text, logprob):
            return {"token": text, "logprob": logprob, "bytes": list(text.encode())}
        return {"content": [entry(*self.first_token[0]) | {"top_logprobs": [entry(*t) for t in self.first_token[:self.top_logprobs]]}]}


class Batcher:
    """One thread decodes for every request: it takes all that wait (up to max_batch) and decodes them together,
    those with an image apart from text-only ones, and greedy apart from sampled ones."""

    def __init__(self, loaded, max_batch: int, max_waiting: int):
        self.loaded, self.max_batch, self.max_waiting = loaded, max_batch, max_waiting
        self.waiting: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, name="medvlm-serve-decode", daemon=True).start()

    def submit(self, job: Job) -> None:
        if self.waiting.qsize() >= self.max_waiting:
            raise ApiError(429, f"{self.max_waiting} requests are already waiting; retry shortly.", "rate_limit_error")
        self.waiting.put(job)

    def _run(self) -> None:
        from medvlm.predict import stream_rows

        while True:
            jobs = [self.waiting.get()]
            # Clients that send together arrive a few milliseconds apart: a short wait lets them share one batch.
            deadline = time.monotonic() + SERVE_BATCH_WINDOW_S
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self.waiting.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                if not job.left:
                    groups.setdefault((job.image is not None, job.settings.temperature), []).append(job)
            for group in groups.values():
                asked = [job.top_logprobs for job in group if job.top_logprobs is not None]
                for job in group:
                    job.prompt_tokens, job.batch = int(job.inputs["input_ids"].shape[1]), len(group)
                try:
                    # Each request's inputs were built when its context was checked: batched, not encoded again.
                    stream_rows(self.loaded, [job.inputs for job in group], [job.settings for job in group],
                                lambda row, text, finish, top, group=group: group[row].tell(text, finish, top=top),
                                max(1, *asked) if asked else 0)  # the first of them is the token said
                except Exception as e:  # one bad batch must not stop the server; its clients hear why
                    log.exception("decoding failed")
                    for job in group:
                        job.tell(None, None, f"decoding failed ({type(e).__name__})")


def check_auth(authorization: str | None, key: str | None) -> None:
    if key is None:
        return
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise ApiError(401, "Missing or wrong API key: send 'Authorization: Bearer <key>'.", "authentication_error",
                       code="invalid_api_key")


def decode_image(url) -> object:
    if not isinstance(url, str) or not url.startswith("data:"):
        raise ApiError(400, "Send the image as a base64 data URL (data:image/png;base64,...): this server fetches no URLs.",
                       param="messages")
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise ApiError(400, "The image data URL must be base64-encoded.", param="messages")
    if len(payload) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
        raise ApiError(400, f"The image is over {MAX_UPLOAD_BYTES // 2**20} MB.", param="messages")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "The image data URL is not valid base64.", param="messages") from None
    with tempfile.NamedTemporaryFile(suffix=".img") as file:  # load_image's checks (size, format, DICOM) read a file
        file.write(data)
        file.flush()
        try:
            return load_image(file.name)
        except UserFacingError as e:
            raise ApiError(400, f"The image cannot be used: {str(e).replace(os.path.basename(file.name), 'it')}", param="messages") from None


def parse_messages(messages) -> tuple[list, object]:
    """OpenAI messages -> ([(question, answer)..., (question, None)], image or None)."""
    from medvlm.chat import check_question

    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list.", param="messages")
    turns, image, expected = [], None, "user"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise ApiError(400, f"messages[{index}] needs a role: system, user or assistant.", param="messages")
        role, content = message["role"], message.get("content")
        if role == "system":
            continue
        if role != expected:
            raise ApiError(400, f"messages[{index}] is a {role} message where a {expected} message belongs: "
                                "user and assistant messages alternate, from a user message to a user message.", param="messages")
        texts = []
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise ApiError(400, f"messages[{index}].content must be text or a list of parts.", param="messages")
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "image_url" and role == "user":
                if turns or image is not None:
                    raise ApiError(400, "One image per conversation, on its first user message.", param="messages")
                url = part.get("image_url")
                image = decode_image(url.get("url") if isinstance(url, dict) else url)
            else:
                raise ApiError(400, f"messages[{index}] has a part this server does not take ({kind!r}): text, or an "
                                    "image_url on the first user message.", param="messages")
        text = "\n".join(texts)
        if role == "user":
            try:
                turns.append([check_question(text), None])
            except UserFacingError as e:
                raise ApiError(400, f"messages[{index}]: {e}", param="messages") from None
            expected = "assistant"
        else:
            turns[-1][1] = text.strip()
            expected = "user"
    if expected != "assistant":
        raise ApiError(400, "The last message must be the user's question.", param="messages")
    return [tuple(turn) for turn in turns], image


def parse_settings(body: dict) -> "GenerationSettings":
    from medvlm.chat import GenerationSettings

    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    limit = DEFAULT_MAX_NEW_TOKENS if limit is None else limit
    temperature = body.get("temperature")
    temperature = DEFAULT_TEMPERATURE if temperature is None else temperature
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_NEW_TOKENS_LIMIT:
        raise ApiError(400, f"max_tokens must be an integer from 1 to {MAX_NEW_TOKENS_LIMIT}.", param="max_tokens")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise ApiError(400, "temperature must be a number from 0 to 2.", param="temperature")
    if body.get("n", 1) != 1:
        raise ApiError(400, "This server gives one answer per request (n = 1).", param="n")
    return GenerationSettings(max_new_tokens=limit, temperature=float(temperature))


def parse_logprobs(body: dict) -> int | None:
    """How many alternatives of the first token to return (0: only the token said); None: no logprobs."""
    wanted, top = body.get("logprobs", False), body.get("top_logprobs")
    if not isinstance(wanted, bool):
        raise ApiError(400, "logprobs must be true or false.", param="logprobs")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20):
        raise ApiError(400, "top_logprobs must be an integer from 0 to 20.", param="top_logprobs")
    if top is not None and not wanted:
        raise ApiError(400, "top_logprobs needs logprobs set to true.", param="top_logprobs")
    return (top or 0) if wanted else None


def build_server(loaded, served_name: str, api_key: str | None = None, max_batch: int = SERVE_MAX_BATCH,
                 max_waiting: int = SERVE_MAX_WAITING):
    """The FastAPI app serving `loaded` under `served_name`."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from medvlm.chat import encode_to_fit

    app = FastAPI(title="medvlm.serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher = Batcher(loaded, max_batch, max_waiting)

    def error_response(error: ApiError) -> JSONResponse:
        headers = {"Retry-After": "1"} if error.status == 429 else None
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request, error: ApiError):
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return error_response(ApiError(error.status_code, str(error.detail), kind))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error):
        return error_response(ApiError(400, "The request is not valid."))

    @app.get("/v1/models")
    async def list_models(request: Request):
        check_auth(request.headers.get("authorization"), api_key)
        return {"object": "list", "data": [{"id": served_name, "object": "model", "created": 0, "owned_by": "medvlm"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_auth(request.headers.get("authorization"), api_key)
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "The request body is not JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        if body.get("model") != served_name:
            raise ApiError(404, f"The model {body.get('model')!r} does not exist here; this server serves {served_name!r}.",
                           "not_found_error", "model", "model_not_found")
        settings, top_logprobs = parse_settings(body), parse_logprobs(body)
        turns, image = await run_in_threadpool(parse_messages, body.get("messages"))
        try:
            inputs = await run_in_threadpool(encode_to_fit, loaded, turns[:-1], turns[-1][0], image, settings.max_new_tokens)
        except UserFacingError as e:
            raise ApiError(400, str(e), param="messages", code="context_length_exceeded") from None
        job = Job(inputs, image, settings, asyncio.get_running_loop(), top_logprobs=top_logprobs)
        batcher.submit(job)
        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": reply_id, "created": created, "model": served_name}

        if not body.get("stream"):
            try:
                while True:
                    text, finish, error = await job.answers.get()
                    if error:
                        raise ApiError(500, error, "server_error")
                    if finish:
                        break
            finally:
                job.left = True
            completion_tokens = len(loaded.tokenizer(text, add_special_tokens=False).input_ids)
            return JSONResponse(base | {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": job.logprobs(),
                             "finish_reason": finish}],
                "usage": {"prompt_tokens": job.prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": job.prompt_tokens + completion_tokens},
            }, headers={"X-Medvlm-Batch": str(job.batch)})

        def event(delta: dict, finish: str | None = None, logprobs: dict | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            chunk = base | {"object": "chat.completion.chunk", "choices": [choice]}
            return f"data: {JSONResponse(chunk).body.decode()}\n\n"

        async def events():
            sent = ""
            try:
                yield event({"role": "assistant", "content": ""})
                while True:
                    text, finish, error = await job.answers.get()
                    if error:
                        yield f"data: {JSONResponse(ApiError(500, error, 'server_error').body()).body.decode()}\n\n"
                        return
                    # The visible answer only grows, except that the final one may drop a held-back tail.
                    piece = text[len(sent):] if text.startswith(sent) else ""
                    if piece:
                        yield event({"content": piece}, logprobs=None if sent else job.logprobs())  # the first token's
                        sent += piece
                    if finish:
                        yield event({}, finish)
                        yield "data: [DONE]\n\n"
                        return
            finally:
                job.left = True  # a client that went away frees its row

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.Parser(PROG, __doc__)
    cli.add_model_arguments(parser, served=False)
    parser.add_argument("--served_name", help="the model's name for clients (default: --model as given)")
    parser.add_argument("--host", default=HOST, help=f"address to listen on (default: {HOST}; 0.0.0.0 for other machines)")
    parser.add_argument("--port", type=int, default=SERVE_PORT, help=f"default: {SERVE_PORT}")
    parser.add_argument("--max_batch", type=int, default=SERVE_MAX_BATCH, help="requests decoded together at most")
    parser.add_argument("--max_waiting", type=int, default=SERVE_MAX_WAITING, help="queued requests beyond which 429 is answered")
    args = parser.parse_args(argv)
    parser.check({"--port": not 1 <= args.port <= 65535, "--max_batch": not 1 <= args.max_batch <= 256,
                  "--max_waiting": args.max_waiting < 1})
    return args


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from medvlm import models

    api_key = os.environ.get(API_KEY_ENV) or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        print(f"{PROG}: WARNING: serving on {args.host} with no {API_KEY_ENV}: anyone who reaches it can use the model.",
              file=sys.stderr, flush=True)
    loaded = models.load(models.resolve(args.model, adapter=args.adapter, in_process=True), cli.device_of(args), args.quantize)
    served_name = args.served_name or args.model
    app = build_server(loaded, served_name, api_key, args.max_batch, args.max_waiting)
    print(f"medvlm.serve: {served_name} on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return cli.run(PROG, lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
