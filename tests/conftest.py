import os
import socket
import sys
from pathlib import Path

import pytest

import medvlm  # noqa: F401  first: importing medvlm sets the offline switches, so no test touches the network

sys.path.insert(0, str(Path(__file__).parent))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores (pytest.ini): one torch thread each, not two threads fighting over each core. The apps
    # and servers the tests start as subprocesses keep torch's default.
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
VQA_RAD = SHARED_DATA / "vqa-rad"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vqa_rad_image() -> Path:
    path = VQA_RAD / "images" / "synpic54610.jpg"  # a head CT from VQA-RAD (CC0)
    assert path.is_file(), f"shared data missing: {path}"
    return path


@pytest.fixture(scope="session")
def medvlm_tiny():
    """The app's default model, as registered (with its trained adapter, when it has one)."""
    from medvlm import models

    return models.load(models.resolve("medvlm-tiny"), device="cpu")


@pytest.fixture(scope="session")
def medvlm_tiny_base():
    """MedVLM-Tiny as assembled from the PyPI parts, without any adapter."""
    from dataclasses import replace

    from medvlm import models

    return models.load(replace(models.REGISTRY["medvlm-tiny"], adapter=None), device="cpu")
