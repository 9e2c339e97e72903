"""Models served elsewhere, behind an OpenAI-compatible chat API: vLLM, SGLang, TGI, Ollama, or medvlm.serve.

    python app.py --model openai:http://gpu-box:8000/v1 --served_model llava-hf/llava-1.5-7b-hf
    python -m medvlm.evaluate --model openai:http://gpu-box:8000/v1 --served_model pathvqa --data ... --concurrency 16

A served model answers like a loaded one (medvlm.chat.stream_reply, medvlm.predict.answer_examples): the image goes
as a base64 PNG data URL on the first user message, the conversation as messages, answers stream (server-sent
events), temperature and max tokens pass through, and scored questions carry the same short-answer instruction.
The server fits the prompt into its context and stops at its model's end of turn.

If the server wants an API key, set MEDVLM_API_KEY (or type it where an admin adds a server in the app): it is sent
as a bearer token to that server only, and never shown, logged or stored.
"""
import base64
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import httpx
from PIL import Image

from medvlm.answers import Answer, p_yes_from_logprobs
from medvlm.errors import UserFacingError
from medvlm.models.families import Family, Turn
from medvlm.settings import REMOTE_CONNECT_TIMEOUT_S, REMOTE_RETRIES, REMOTE_TIMEOUT_S

PREFIX = "openai:"
API_KEY_ENV = "MEDVLM_API_KEY"
# What a family decides in-process (the prompt template, where an answer ends) is the server's job; the words medvlm
# adds to a question (the short-answer instruction, the detector's findings) are the same for every model.
class ServedFamily(Family):
    name = "openai"


REMOTE_FAMILY = ServedFamily()


def is_remote(source: str | None) -> bool:
    return bool(source) and source.startswith(PREFIX)


def base_url(source: str) -> str:
    """`openai:http://host:8000/v1` -> `http://host:8000/v1`, checked."""
    url = source[len(PREFIX):].strip().rstrip("/")
    parsed = httpx.URL(url) if url.startswith(("http://", "https://")) else None
    if parsed is None or not parsed.host:
        raise UserFacingError(f"{source!r} is not a server address: write openai:http://HOST:PORT/v1.")
    if parsed.userinfo:
        raise UserFacingError("Put the server's API key in MEDVLM_API_KEY, not in its address.")
    return url


def spec_name(url: str, served_model: str) -> str:
    return f"{served_model} @ {url}"


def image_data_url(image: Image.Image) -> str:
    """The image as the OpenAI API takes it inline: a PNG (lossless: a scan's grey levels arrive as they were),
    compressed at zlib's fastest level (a few per cent larger, several times faster to write)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def messages_for(turns: list[Turn], image: Image.Image | None) -> list[dict]:
    """[(question, answer)...] -> OpenAI chat messages; the image on the first user message, before its text."""
    messages = []
    for i, (question, answer) in enumerate(turns):
        if i == 0 and image is not None:
            content = [{"type": "image_url", "image_url": {"url": image_data_url(image)}}, {"type": "text", "text": question}]
        else:
            content = question
        messages.append({"role": "user", "content": content})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
    return messages


def error_message(response: httpx.Response) -> str:
    """The server's own words from an error body: OpenAI and vLLM ({"error": {"message"}} / {"message"}), TGI
    ({"error": "..."}), or the first line of plain text."""
    try:
        body = response.json()
    except ValueError:
        return (response.text.strip().splitlines() or [response.reason_phrase])[0][:300]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail") or json.dumps(error)
    return " ".join(str(error).split())[:300]


class RemoteModel:
    """A model on an OpenAI-compatible server, used where a medvlm.models.LoadedModel would be."""

    tokenizer = None  # the server tokenizes
    device = "remote"

    def __init__(self, spec, timeout: float = REMOTE_TIMEOUT_S, connect_timeout: float = REMOTE_CONNECT_TIMEOUT_S,
                 retries: int = REMOTE_RETRIES):
        self.spec, self.family, self.retries = spec, REMOTE_FAMILY, retries
        self.url = base_url(spec.source)
        self.timeout = timeout
        # One client (a pool of keep-alive connections) shared by every thread that asks.
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout), trust_env=False)

    @property
    def where(self) -> str:
        return f"The model server at {self.url}"

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else {}

    # --- errors --------------------------------------------------------------------------------------------------------

    def _failure(self, response: httpx.Response) -> UserFacingError:
        status, said = response.status_code, error_message(response)
        if status in (401, 403):
            key = "the API key is wrong" if self.spec.api_key else f"it wants an API key: set {API_KEY_ENV}"
            return UserFacingError(f"{self.where} refused the request ({status}): {key}.")
        if status == 404:
            served = self.served_models(quiet=True)
            if served is not None and self.spec.served_model not in served:
                return UserFacingError(f"{self.where} does not serve {self.spec.served_model!r}; it serves: {', '.join(served) or 'nothing'}.")
            return UserFacingError(f"{self.where} answered 404 ({said}): check that the address ends in /v1.")
        if status == 429:
            return UserFacingError(f"{self.where} is busy (429: {said}); try again in a moment.")
        if status >= 500:
            return UserFacingError(f"{self.where} failed ({status}: {said}).")
        return UserFacingError(f"{self.where} refused the request ({status}: {said}).")

    def _network(self, error: httpx.HTTPError, got: str | None = None) -> UserFacingError:
        """got: the answer received so far, when the error broke off a stream."""
        if isinstance(error, httpx.ConnectTimeout):
            return UserFacingError(f"{self.where} did not accept a connection in time: is the address right?")
        if isinstance(error, httpx.TimeoutException):
            return UserFacingError(f"{self.where} sent nothing for {self.timeout:g} s: it is overloaded or stuck.")
        if isinstance(error, httpx.ConnectError):
            why = "connection refused" if "refused" in str(error).lower() else (str(error).strip() or type(error).__name__)
            return UserFacingError(f"{self.where} cannot be reached ({why}): is it running?")
        if got is not None:
            return UserFacingError(f"{self.where} broke off the answer after {len(got)} characters ({type(error).__name__}).")
        return UserFacingError(f"{self.where} closed the connection ({type(error).__name__}).")

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A response whose headers say success (its body not yet read when streaming), retrying 429 and 503 with
        the server's Retry-After (at most 10 s) or a doubling pause."""
        stream = kwargs.pop("stream", False)
        for attempt in range(self.retries + 1):
            try:
                request = self.client.build_request(method, self.url + path, headers=self._headers(), **kwargs)
                response = self.client.send(request, stream=stream)
            except httpx.HTTPError as e:
                raise self._network(e) from None
            if response.is_success:
                return response
            try:
                response.read()
            except httpx.HTTPError as e:
                raise self._network(e) from None
            finally:
                response.close()
            if response.status_code not in (429, 503) or attempt == self.retries:
                raise self._failure(response)
            try:
                pause = min(float(response.headers.get("retry-after", 2**attempt)), 10.0)
            except ValueError:
                pause = 2.0**attempt
            time.sleep(pause)
        raise AssertionError("unreachable")

    # --- what the server serves ------------------------------------------------------------------------------------------

    def served_models(self, quiet: bool = False) -> list[str] | None:
        """GET /models -> model ids (None when quiet and the listing failed)."""
        try:
            response = self._send("GET", "/models")
            return [str(entry["id"]) for entry in response.json().get("data", [])]
        except (UserFacingError, ValueError, KeyError, TypeError, AttributeError) as e:
            if quiet:
                return None
            if isinstance(e, UserFacingError):
                raise
            raise UserFacingError(f"{self.where} sent a model list that is not OpenAI's /v1/models format.") from None

    def problem(self) -> str | None:
        """Why this model cannot answer now (one line), or None: the server is up, lets us in and serves it."""
        try:
            served = self.served_models()
        except UserFacingError as e:
            return str(e)
        if self.spec.served_model not in served:
            return f"{self.where} does not serve {self.spec.served_model!r}; it serves: {', '.join(served) or 'nothing'}."
        return None

    # --- answers ---------------------------------------------------------------------------------------------------------

    def request_body(self, turns: list[Turn], image, settings, stream: bool) -> dict:
        body = {"model": self.spec.served_model, "messages": messages_for(turns, image), "max_tokens": int(settings.max_new_tokens),
                "temperature": float(settings.temperature), "stream": stream,
                # The first token's alternatives give a yes/no answer's p_yes (OpenAI's logprobs, which vLLM, TGI and
                # medvlm.serve honour and the rest ignore).
                "logprobs": True, "top_logprobs": 5}
        if settings.temperature == 0:
            body["top_p"] = 1.0  # greedy: some servers sample at temperature 0 unless top_p is 1 too
        return body

    def stream(self, turns: list[Turn], image, settings) -> Iterator[str]:
        """The answer as it grows (server-sent events); the last value is the whole answer, stripped, an Answer with
        its p_yes from the first chunk that carries logprobs."""
        response = self._send("POST", "/chat/completions", json=self.request_body(turns, image, settings, True), stream=True)
        text, finished, p_yes = "", False, None
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                data = line[5:].strip()
                if data == "[DONE]":
                    finished = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise UserFacingError(f"{self.where} sent a stream event that is not JSON.") from None
                if isinstance(chunk, dict) and "error" in chunk:
                    raise UserFacingError(f"{self.where} stopped with an error: {error_message(httpx.Response(500, json=chunk))}")
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if p_yes is None and not text and choice.get("logprobs"):  # the answer's first token
                        p_yes = p_yes_from_logprobs(choice["logprobs"])
                    if piece:
                        text += piece
                        yield text.strip()
                    finished = finished or choice.get("finish_reason") is not None
        except httpx.HTTPError as e:
            raise self._network(e, text) from None
        finally:
            response.close()
        if not finished:
            raise UserFacingError(f"{self.where} broke off the answer after {len(text)} characters (the stream ended early).")
        yield Answer(text.strip(), p_yes)

    def complete(self, turns: list[Turn], image, settings) -> Answer:
        """The whole answer in one response (no streaming), with its p_yes when the server returns logprobs."""
        body = self.request_body(turns, image, settings, False)
        response = self._send("POST", "/chat/completions", json=body)
        try:
            choice = response.json()["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise UserFacingError(f"{self.where} sent an answer that is not OpenAI's chat format.") from None
        return Answer((message.get("content") or "").strip(), p_yes_from_logprobs(choice.get("logprobs")))

    def answer_many(self, items: list[tuple], settings, concurrency: int = 8,
                    on_done: Callable[[int], None] | None = None) -> list[str]:
        """Answers for [(image or None, question)], `concurrency` requests in flight at once (the server batches
        them), in order. The first failure stops the rest and is raised."""
        answers: list[str | None] = [None] * len(items)
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="medvlm-remote") as pool:
            futures = {pool.submit(self.complete, [(question, None)], image, settings): k for k, (image, question) in enumerate(items)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise future.exception()
                    answers[futures[future]] = future.result()
                if on_done:
                    on_done(len(done))
        return answers


def problem(spec) -> str | None:
    """Why the served model cannot answer now, asked quickly (the connect timeout bounds the whole probe: a picker
    must not wait minutes on a stuck server), on a client closed afterwards."""
    served = RemoteModel(spec, timeout=REMOTE_CONNECT_TIMEOUT_S)
    try:
        return served.problem()
    finally:
        served.client.close()


def api_key_from_env() -> str | None:
    return os.environ.get(API_KEY_ENV) or None
