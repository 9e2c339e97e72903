"""Deploying as a Hugging Face Space: the README's front matter, and the app as a Space starts it (SPACE_ID set)."""
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from conftest import REPO, free_port

from medvlm.models import REGISTRY
from medvlm.settings import SPACE_GPU_MODEL, app_defaults

# The Spaces configuration reference's hardware flavours (huggingface.co/docs/hub/spaces-config-reference).
HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "a10g-small", "a10g-large", "a10g-largex2",
            "a10g-largex4", "a100-large", "zero-a10g"}


def front_matter() -> dict:
    text = (REPO / "README.md").read_text()
    found = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert found, "README.md must open with the Space's YAML front matter"
    return yaml.safe_load(found.group(1))


def test_the_front_matter_is_a_valid_space_config_that_matches_the_code():
    config = front_matter()
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert config["sdk"] == "gradio" and config["sdk_version"] == pins["gradio"].split()[0]
    assert config["app_file"] == "app.py" and (REPO / config["app_file"]).is_file()
    assert re.fullmatch(r"3\.\d+(\.\d+)?", str(config["python_version"]))
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == str(config["python_version"])  # what the tests ran on
    assert config["suggested_hardware"] in HARDWARE
    assert config["title"] and len(config["emoji"]) == 1 and 0 < len(config["short_description"]) <= 60
    assert config["license"] and config["colorFrom"] and config["colorTo"]
    hub = [s for spec in REGISTRY.values() for s in (spec.source, spec.adapter)
           if s and not s.startswith("builtin:") and not os.path.isabs(s)]
    assert sorted(config["models"]) == sorted(hub)  # every hub model the picker offers, and nothing else
    assert config["preload_from_hub"] == [REGISTRY[SPACE_GPU_MODEL].source]


def test_on_a_space_the_app_binds_where_the_space_routes_and_takes_its_variables(tmp_path, monkeypatch):
    assert app_defaults({}) == {"host": "127.0.0.1", "port": 7860, "model": "medvlm-tiny", "db": "medvlm.db"}
    space = app_defaults({"SPACE_ID": "lab/medvlm", "MEDVLM_MODEL": "smolvlm-256m"})
    assert space["host"] == "0.0.0.0" and space["port"] == "7860" and space["model"] == "smolvlm-256m"
    routed = app_defaults({"SPACE_ID": "lab/medvlm", "GRADIO_SERVER_NAME": "10.0.0.5", "GRADIO_SERVER_PORT": "8080"})
    assert routed["host"] == "10.0.0.5" and routed["port"] == "8080" and routed["model"] == "medvlm-tiny"
    from app import parse_args

    monkeypatch.setenv("SPACE_ID", "lab/medvlm")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8080")
    args = parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "eighty")
    with pytest.raises(SystemExit):
        parse_args([])


def start_space(tmp_path, **env):
    port = free_port()
    environ = dict(os.environ, SPACE_ID="lab/medvlm", GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT=str(port),
                   PYTHONUNBUFFERED="1", **env)
    log = tmp_path / f"space-{port}.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "app.py", "--db", str(tmp_path / f"{port}.db")], cwd=REPO, env=environ,
                                   stdout=out, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}/", time.time() + 240
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.time() < deadline:
        if process.poll() is not None:
            return process, None, log
        try:
            opener.open(url, timeout=2)
            return process, url, log
        except OSError:
            time.sleep(1)
    process.kill()
    pytest.fail(f"the Space did not start:\n{log.read_text()[-3000:]}")


def test_a_space_secret_makes_review_accounts(tmp_path):
    """SPACE_ID set: the app binds to GRADIO_SERVER_NAME/PORT, starts the model MEDVLM_MODEL names (a tiny local
    Qwen2.5-VL here), and adds MEDVLM_ACCOUNTS' accounts. (The in-page warning of a Space without accounts:
    test_browser's wide-bind test.)"""
    from test_browser import login_status
    from tiny_models import save_tiny_qwen2_5_vl

    model = save_tiny_qwen2_5_vl(tmp_path / "qwen")
    secret = json.dumps([{"name": "ada", "password": "a long enough password", "admin": True}])
    process, url, log = start_space(tmp_path, MEDVLM_ACCOUNTS=secret, MEDVLM_MODEL=str(model))
    try:
        assert url, log.read_text()[-2000:]
        assert "review accounts from MEDVLM_ACCOUNTS: 1 added" in log.read_text()
        assert f"loaded {model}" in log.read_text() and "no review accounts" not in log.read_text()
        assert login_status(url, "ada", "a long enough password") == 200 and login_status(url, "ada", "wrong guess here") == 400
    finally:
        process.terminate()
        process.wait(timeout=30)



def test_a_bad_accounts_secret_stops_the_start_in_one_line(tmp_path, monkeypatch, capsys):
    from app import main

    monkeypatch.setenv("SPACE_ID", "lab/medvlm")
    monkeypatch.setenv("MEDVLM_ACCOUNTS", "ada:secret")
    assert main(["--db", str(tmp_path / "m.db"), "--port", str(free_port())]) == 2  # before any model loads
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("python app.py: error:") and "must be a JSON list" in errors[0]


STAND_IN = '''"""A stand-in for Hugging Face's `spaces` package: GPU(duration) logs each call of what it decorates."""
import functools
import json
import os


def GPU(duration=60):
    def decorate(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            with open(os.environ["SPACES_LOG"], "a") as log:
                log.write(json.dumps({"function": fn.__qualname__, "duration": duration}) + "\\n")
            return fn(*args, **kwargs)
        return run
    return decorate
'''

ZEROGPU_RUN = """
from PIL import Image
from medvlm import compare
from medvlm.chat import GenerationSettings
from medvlm.detect import Detector
from medvlm.host import ModelHost
from medvlm.settings import DETECTOR_WEIGHTS
host = ModelHost(device="cpu")
host.start({model!r})
print("answer:", list(host.stream_reply(None, [], "Is this a CT?", None, GenerationSettings(max_new_tokens=4)))[-1])
picture = Image.open({image!r}).convert("RGB")
detections, answers = compare.compare_batch(host.model(None), Detector(DETECTOR_WEIGHTS, device="cpu"), [picture],
                                            GenerationSettings(max_new_tokens=4, temperature=0.0))
print("compared:", len(answers))
"""


def test_zerogpu_wraps_the_generation_entry_points_only_where_spaces_exists(tmp_path, vqa_rad_image):
    from medvlm import chat, compare, host, zerogpu
    from medvlm.settings import CHAT_GPU_SECONDS, COMPARE_BATCH_GPU_SECONDS

    # Without `spaces` (here, and anywhere but a ZeroGPU Space): the functions themselves, unchanged.
    assert zerogpu.spaces is None and host.generate is chat.stream_reply and not hasattr(compare.compare_batch, "__wrapped__")
    # With it: a chat answer and a comparison batch each run under GPU(duration), as a Space runs them.
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "__init__.py").write_text(STAND_IN)
    log = tmp_path / "gpu.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]), SPACES_LOG=str(log))
    from tiny_models import save_tiny_qwen2_5_vl

    model = save_tiny_qwen2_5_vl(tmp_path / "qwen")  # loads in a second: the wrapping is what is tested
    done = subprocess.run([sys.executable, "-c", ZEROGPU_RUN.format(image=str(vqa_rad_image), model=str(model))], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "answer:" in done.stdout and "compared: 1" in done.stdout
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [{"function": "stream_reply", "duration": CHAT_GPU_SECONDS},
                     {"function": "compare_batch", "duration": COMPARE_BATCH_GPU_SECONDS}]
