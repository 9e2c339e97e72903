"""medvlm.serve as a real server on localhost (a subprocess), and medvlm.remote, evaluate and the model host using it
as any OpenAI-compatible server: same answers as in-process, streaming, batching, and every failure as one line."""
import base64
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import REPO, VQA_RAD, free_port

from medvlm import chat, metrics, models
from medvlm.chat import GenerationSettings
from medvlm.data import load_examples
from medvlm.errors import UserFacingError
from medvlm.predict import answer_examples
from medvlm.remote import RemoteModel

KEY = "test-key-3f9a"
SERVED = "medvlm-tiny"


def start_server(tmp_path: Path, *args: str, key: str | None = KEY):
    """`python -m medvlm.serve --model medvlm-tiny ARGS` on a free port -> (process, base URL) once /v1/models answers."""
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("MEDVLM_SERVE_API_KEY", None)
    if key:
        env["MEDVLM_SERVE_API_KEY"] = key
    log = tmp_path / f"serve-{port}.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "medvlm.serve", "--model", SERVED, "--port", str(port), *args],
                                   cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while time.time() < deadline:
        assert process.poll() is None, f"server exited early:\n{log.read_text()[-3000:]}"
        try:
            httpx.get(url + "/models", timeout=2, trust_env=False)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    pytest.fail(f"server did not start:\n{log.read_text()[-3000:]}")


def stop(process):
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process, url = start_server(tmp_path_factory.mktemp("serve"))
    yield url
    stop(process)


def served(url, key=KEY, model=SERVED, **kwargs) -> RemoteModel:
    return RemoteModel(models.resolve("openai:" + url, served_model=model, api_key=key), **kwargs)


def post(url, body, key=KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url + "/chat/completions", json=body, headers=headers, timeout=60, trust_env=False)


def data_url(raw: bytes, kind="image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(raw).decode()


def png_bytes(path) -> bytes:
    from medvlm.images import load_image

    buffer = io.BytesIO()
    load_image(path).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def questions():
    return load_examples(str(VQA_RAD / "vqa_rad.jsonl"), "test", limit=8).examples


def test_answers_are_the_in_process_greedy_answers(server, medvlm_tiny, questions):
    remote = served(server)
    assert remote.problem() is None
    here = answer_examples(medvlm_tiny, questions)
    there = answer_examples(remote, questions, concurrency=4)
    assert there == here and all(there)
    # Each yes/no answer's confidence travels as the first token's logprobs: the in-process P(yes) against P(no)
    # (which sums every yes/no spelling over the whole vocabulary; the server sends the top 5).
    measured = [(a.p_yes, b.p_yes) for a, b in zip(here, there) if a.p_yes is not None and metrics.yes_no(a)]
    assert measured and all(b == pytest.approx(a, abs=0.01) for a, b in measured)
    # A streamed chat with a follow-up: the same final answers, and the answer is seen growing.
    image = questions[0].image()
    settings = GenerationSettings(max_new_tokens=48)
    for history in ([], [("What organ is shown?", "the brain")]):
        expected = list(chat.stream_reply(medvlm_tiny, history, "Describe the image.", image, settings))[-1]
        seen = list(chat.stream_reply(remote, history, "Describe the image.", image, settings))
        assert seen[-1] == expected
        assert len(seen) >= 2 and all(expected.startswith(part) for part in seen)
    # A streamed yes or no carries its confidence too (from the first chunk's logprobs).
    said = [(e, list(chat.stream_reply(medvlm_tiny, [], e.question, e.image(), settings))[-1]) for e in questions]
    e, expected = next((e, a) for e, a in said if metrics.yes_no(a))
    seen = list(chat.stream_reply(remote, [], e.question, e.image(), settings))[-1]
    assert seen == expected and seen.p_yes == pytest.approx(expected.p_yes, abs=0.01)
    # Swapping the image changes what the server hears: the image travels with the request.
    swapped = questions[-1].image()
    assert list(chat.stream_reply(remote, [], "Describe the image.", swapped, settings))[-1] == \
        list(chat.stream_reply(medvlm_tiny, [], "Describe the image.", swapped, settings))[-1]


def test_concurrent_requests_are_decoded_together(server, medvlm_tiny, questions):
    from medvlm.images import load_image

    bodies = [{"model": SERVED, "max_tokens": 16, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(png_bytes(e.image_path))}}, {"type": "text", "text": e.question}]}]}
        for e in questions]
    for body in bodies[::2]:  # half ask for the first token's logprobs: batched with those that don't
        body |= {"logprobs": True, "top_logprobs": 3}
    replies = [None] * len(bodies)

    def ask(k):
        replies[k] = post(server, bodies[k])

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.status_code == 200 for r in replies)
    assert max(int(r.headers["x-medvlm-batch"]) for r in replies) > 1  # some requests shared one decode
    alone = [chat.stream_reply(medvlm_tiny, [], e.question, load_image(e.image_path), GenerationSettings(max_new_tokens=16)) for e in questions]
    assert [r.json()["choices"][0]["message"]["content"] for r in replies] == [list(a)[-1] for a in alone]
    for k, reply in enumerate(replies):
        logprobs = reply.json()["choices"][0]["logprobs"]
        if k % 2:
            assert logprobs is None
            continue
        first = logprobs["content"][0]
        assert len(first["top_logprobs"]) == 3 and first["top_logprobs"][0] == {k: first[k] for k in ("token", "logprob", "bytes")}
        assert reply.json()["choices"][0]["message"]["content"].startswith(first["token"].strip())  # greedy: the likeliest
        assert all(a["logprob"] >= b["logprob"] for a, b in zip(first["top_logprobs"], first["top_logprobs"][1:]))
    usage = replies[0].json()["usage"]
    assert usage["prompt_tokens"] > 49 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


TRUNCATED_PNG = data_url(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)


@pytest.mark.parametrize("body, status, words", [
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, 404, "does not exist here"),
    ({"model": SERVED, "messages": []}, 400, "non-empty list"),
    ({"model": SERVED, "messages": [{"role": "user", "content": "  "}]}, 400, "Type a question"),
    ({"model": SERVED, "messages": [{"role": "user", "content": "x" * 20_000}]}, 400, "limit is 16,000"),
    ({"model": SERVED, "messages": [{"role": "assistant", "content": "hi"}]}, 400, "alternate"),
    ({"model": SERVED, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, 400, "last message"),
    ({"model": SERVED, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://example.com/x.png"}},
                                                                 {"type": "text", "text": "hi"}]}]}, 400, "fetches no URLs"),
    ({"model": SERVED, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}},
                                                                 {"type": "text", "text": "hi"}]}]}, 400, "not valid base64"),
    ({"model": SERVED, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": TRUNCATED_PNG}},
                                                                 {"type": "text", "text": "hi"}]}]}, 400, "cannot be used"),
    ({"model": SERVED, "messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]}, 400, "does not take"),
    ({"model": SERVED, "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}, 400, "max_tokens"),
    ({"model": SERVED, "temperature": 9, "messages": [{"role": "user", "content": "hi"}]}, 400, "temperature"),
    ({"model": SERVED, "n": 3, "messages": [{"role": "user", "content": "hi"}]}, 400, "one answer"),
    ({"model": SERVED, "logprobs": "yes", "messages": [{"role": "user", "content": "hi"}]}, 400, "logprobs must be"),
    ({"model": SERVED, "logprobs": True, "top_logprobs": 50, "messages": [{"role": "user", "content": "hi"}]}, 400, "0 to 20"),
    ({"model": SERVED, "top_logprobs": 2, "messages": [{"role": "user", "content": "hi"}]}, 400, "needs logprobs"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_requests_get_openai_errors(server, body, status, words):
    reply = post(server, body)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert words in error["message"] and "\n" not in error["message"] and error["type"]


def test_the_key_is_required_and_compared(server):
    for key in (None, "wrong-key"):
        reply = httpx.get(server + "/models", headers={"Authorization": f"Bearer {key}"} if key else {}, trust_env=False)
        assert reply.status_code == 401 and reply.json()["error"]["type"] == "authentication_error"
        assert post(server, {"model": SERVED, "messages": [{"role": "user", "content": "hi"}]}, key=key).status_code == 401
    assert "wants an API key: set MEDVLM_API_KEY" in served(server, key=None).problem()
    with pytest.raises(UserFacingError, match=r"refused the request \(401\): the API key is wrong\.$"):
        served(server, key="wrong-key").complete([("hi", None)], None, GenerationSettings())
    assert KEY not in repr(models.resolve("openai:" + server, served_model=SERVED, api_key=KEY))  # never printed


def test_client_failures_are_one_line(server, tmp_path):
    settings = GenerationSettings(max_new_tokens=8)
    wrong = served(server, model="llava-1.5-7b")
    assert wrong.problem() == f"The model server at {server} does not serve 'llava-1.5-7b'; it serves: medvlm-tiny."
    with pytest.raises(UserFacingError, match="does not serve 'llava-1.5-7b'; it serves: medvlm-tiny"):
        list(chat.stream_reply(wrong, [], "hi", None, settings))
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    assert "cannot be reached (connection refused): is it running?" in served(nobody).problem()
    with pytest.raises(UserFacingError, match="Name the model"):
        models.resolve("openai:" + server)
    with pytest.raises(UserFacingError, match="not a server address"):
        models.resolve("openai:ftp://x", served_model=SERVED)
    slow = served(server, timeout=0.05)
    with pytest.raises(UserFacingError, match="sent nothing for 0.05 s"):
        slow.complete([("Describe a brain MRI at length.", None)], None, GenerationSettings(max_new_tokens=400, temperature=1.5))


def test_a_busy_server_says_429_and_a_killed_one_breaks_the_stream(tmp_path):
    """A second server: one request decoded at a time, one waiting; then it is killed in the middle of an answer."""
    process, url = start_server(tmp_path, "--max_batch", "1", "--max_waiting", "1", key=None)
    try:
        long = GenerationSettings(max_new_tokens=300, temperature=2.0)  # sampled at 2.0: hundreds of tokens, no early end
        impatient = served(url, key=None, retries=0)
        failures = []

        def ask():
            try:
                impatient.complete([("Write about the brain.", None)], None, long)
            except UserFacingError as e:
                failures.append(str(e))

        threads = [threading.Thread(target=ask) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert any(f.startswith(f"The model server at {url} is busy (429") for f in failures), failures

        stream = served(url, key=None).stream([("Write about the brain.", None)], None, GenerationSettings(max_new_tokens=1000, temperature=2.0))
        first = next(stream)
        assert first
        process.kill()
        with pytest.raises(UserFacingError, match="broke off the answer"):
            for _ in stream:
                pass
    finally:
        process.kill()
        process.wait(timeout=30)


def run_evaluate(*args, env=None):
    """`python -m medvlm.evaluate ARGS` with MEDVLM_API_KEY as `env` says, run by its main in this process (no new
    interpreter to start) -> returncode, stdout, stderr."""
    import contextlib
    import io
    from types import SimpleNamespace

    from medvlm import evaluate

    saved = os.environ.pop("MEDVLM_API_KEY", None)
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = evaluate.main(list(args))
            except SystemExit as e:
                code = e.code
    finally:
        os.environ.pop("MEDVLM_API_KEY", None)
        if saved is not None:
            os.environ["MEDVLM_API_KEY"] = saved
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_evaluate_against_the_server_resumes_and_fails_cleanly(server, tmp_path, medvlm_tiny, questions):
    db = tmp_path / "review.db"
    common = ["--model", "openai:" + server, "--served_model", SERVED, "--data", str(VQA_RAD / "vqa_rad.jsonl"),
              "--split", "test", "--limit", "8", "--db", str(db), "--concurrency", "4"]
    done = run_evaluate(*common, env={"MEDVLM_API_KEY": KEY})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "closed_accuracy" in done.stdout and KEY not in done.stdout + done.stderr

    from medvlm.store import Store

    store = Store(db)
    answers = [row[0] for row in store.query("SELECT p.answer FROM predictions p JOIN items i ON i.id = p.item_id ORDER BY i.id")]
    assert answers == answer_examples(medvlm_tiny, questions)  # the in-process answers, stored
    model = store.query("SELECT model FROM runs")[0][0]
    assert model == f"{SERVED} @ {server}"
    store.close()

    again = run_evaluate(*common, env={"MEDVLM_API_KEY": KEY})
    assert again.returncode == 0 and "8 already answered" in again.stderr

    more = [*common, "--limit", "12"]  # four new questions, each refused
    for env, words in (({"MEDVLM_API_KEY": "nope"}, "the API key is wrong"), ({}, "wants an API key")):
        failed = run_evaluate(*more, env=env)
        assert failed.returncode == 2
        assert failed.stderr.strip().splitlines()[-1].startswith("python -m medvlm.evaluate: error: The model server at")
        assert words in failed.stderr
    assert Store(db).query("SELECT COUNT(*) FROM predictions")[0][0] == 8  # nothing stored was lost


def test_the_app_host_uses_a_server_and_shows_why_one_is_unavailable(tmp_path):
    from medvlm.host import ModelHost
    from ui import chat_tab

    process, url = start_server(tmp_path, key=None)
    host = ModelHost(device="cpu")
    try:
        host.start("openai:" + url, served_model=SERVED)
        assert host.startup_notice == "" and host.default_name == f"{SERVED} @ {url}"
        assert "on a server" in chat_tab.model_panel(host, None)
        answer = list(host.stream_reply(None, [], "What is an MRI?", None, GenerationSettings(max_new_tokens=12)))[-1]
        assert answer
        assert (f"{SERVED} @ {url} (served)", f"{SERVED} @ {url}") in host.choices()
        with pytest.raises(UserFacingError, match="does not serve 'x'"):
            host.add_server(url, "x")
        name = host.add_server(url, SERVED, api_key="unused")  # a key the server does not ask for is harmless
        assert name in dict((n, label) for label, n in host.choices())
    finally:
        stop(process)
    # A page load within SERVER_CHECK_S takes the last check (no probe, no wait on a stuck server); "Check the models
    # again" asks the server now.
    assert dict((n, label) for label, n in host.choices())[f"{SERVED} @ {url}"].endswith("(served)")
    labels = dict((n, label) for label, n in chat_tab.refresh_models(host)["picker"]["choices"])
    assert labels[f"{SERVED} @ {url}"].endswith("(unavailable: cannot be reached (connection refused): is it running?)")
    assert dict((n, label) for label, n in host.choices())[f"{SERVED} @ {url}"] == labels[f"{SERVED} @ {url}"]
    with pytest.raises(UserFacingError, match="cannot be reached"):
        list(host.stream_reply(None, [], "What is an MRI?", None, GenerationSettings()))
