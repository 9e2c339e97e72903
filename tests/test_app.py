"""The app's entry point and model host, without a browser: CLI flags, start-up fallback, model switching."""
import subprocess
import sys

import pytest
from conftest import REPO

from medvlm.host import ModelHost
from ui import chat_tab
from ui.text import markdown_text


def run_app(*args, timeout=60):
    return subprocess.run([sys.executable, "app.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_help_lists_the_options():
    result = run_app("--help")
    assert result.returncode == 0
    for option in ("--model", "--adapter", "--device", "--quantize", "--host", "--port", "--share"):
        assert option in result.stdout
    assert "llava-1.5-7b" in result.stdout and "midefics" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "99999"], "out of range: --port"),
        (["--port", "http"], "argument --port: invalid int value: 'http'"),
        (["--pool_gb", "0"], "out of range: --pool_gb"),
        (["--pool_gb", "lots"], "argument --pool_gb: invalid float value: 'lots'"),
        (["--quantize", "int3"], "argument --quantize: invalid choice: 'int3'"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_flags_get_one_clear_line(args, message):
    result = run_app(*args)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0]


def test_unloadable_model_falls_back_to_the_default_with_a_reason():
    host = ModelHost(device="cpu")
    host.start("llava-1.5-7b")
    assert host.default_name == "medvlm-tiny"
    assert "Could not start with llava-1.5-7b" in host.startup_notice and "--model PATH" in host.startup_notice
    labels = dict((name, label) for label, name in host.choices())
    assert labels["medvlm-tiny"] == "medvlm-tiny (loaded)" and labels["midefics"] == "midefics (unavailable here)"
    described = chat_tab.model_panel(host, None)
    assert markdown_text("Trained on: vqa-rad") in described and markdown_text("brain-tumor labels") in described
    assert markdown_text("Held-out scores: vqa-rad test closed") in described and "tumour type" in described
    # the shipped adapter was trained on first questions only: the panel says what a follow-up does to its answers
    assert markdown_text("An earlier question can change a yes/no answer") in described


def test_the_bare_base_is_labelled_not_image_grounded(medvlm_tiny_base):
    host = ModelHost(device="cpu")
    host.adopt(medvlm_tiny_base)
    assert "Not yet image-grounded" in chat_tab.model_panel(host, None)


def test_picking_an_unloadable_model_keeps_what_is_loaded():
    host = ModelHost(device="cpu")
    host.start()
    before = host.model(None)
    with pytest.raises(Exception, match="not in the local Hugging Face cache"):
        host.model("midefics")
    assert host.model(None) is before and list(host.pool) == ["medvlm-tiny"] and not host.loading

