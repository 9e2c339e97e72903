"""Defaults, limits and the offline switches, in one place."""
import os
import tempfile
from pathlib import Path

HOST = "127.0.0.1"
PORT = 7860
DEFAULT_MODEL = "medvlm-tiny"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
QUANTIZE_CHOICES = ("auto", "nf4", "none")  # auto: nf4 for the 7B/9B families on CUDA, none elsewhere
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # what ships in the package: adapters, detector
MEDVLM_TINY_ADAPTER = WEIGHTS_DIR / "medvlm-tiny-grounded"  # trained by python -m train.vlm (see the README)
DEFAULT_DB = "medvlm.db"  # the review database: runs, answers, reviewers, verdicts

# On a Hugging Face Space (SPACE_ID set; README front matter): the app binds where the Space routes traffic, takes its
# model from a Space variable, its review accounts from a Space secret, and keeps the database on the persistent
# disk when the Space has one.
SPACE_GPU_MODEL = "llava-1.5-7b"  # preloaded by the front matter's preload_from_hub, for a Space on GPU hardware
SPACE_MODEL_ENV, SPACE_ACCOUNTS_ENV = "MEDVLM_MODEL", "MEDVLM_ACCOUNTS"
SPACE_PERSISTENT_DIR = Path("/data")


def app_defaults(environ=os.environ) -> dict:
    """python app.py's defaults: host, port, model and database, here or on a Space."""
    if not environ.get("SPACE_ID"):
        return {"host": HOST, "port": PORT, "model": DEFAULT_MODEL, "db": DEFAULT_DB}
    persistent = SPACE_PERSISTENT_DIR.is_dir() and os.access(SPACE_PERSISTENT_DIR, os.W_OK)
    return {"host": environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), "port": environ.get("GRADIO_SERVER_PORT", str(PORT)),
            "model": environ.get(SPACE_MODEL_ENV) or DEFAULT_MODEL,
            "db": str(SPACE_PERSISTENT_DIR / DEFAULT_DB) if persistent else DEFAULT_DB}

# Detector (medvlm.detect, train.yolo): the default weights ship in the package.
DETECTOR_WEIGHTS = WEIGHTS_DIR / "yolov8n-brain-tumor.pt"
DETECTOR_CONFIDENCE = 0.25
DETECTOR_IMAGE_SIZE = 320  # trained and run at this size: tumours are 5-15 % of a slice, 16+ px here
COMPARE_DATA = "../shared/data/brain-tumor/data.yaml"  # the Compare tab's suggested dataset (python -m medvlm.compare --data)
COMPARE_BATCH_SIZE = 4  # images per batch of a dataset comparison, 4 questions each: fastest on CPU (bench/compare.py)

# Images: a decompression bomb is refused before its pixels are decoded.
MAX_IMAGE_PIXELS = 50_000_000
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
# Series and volumes (medvlm.volumes): a 512x512 CT of 1,000 slices fits; a bigger one, or an archive that unpacks
# to more, is refused before its pixels are read.
MAX_SERIES_FILES = 2000
MAX_VOLUME_VOXELS = 512 * 512 * 1024
MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024  # a .zip's members, unpacked, in all
MAX_ZIP_RATIO = 200  # a member that unpacks to more than this many times its packed size is a zip bomb

# Questions: the character cap keeps tokenisation cheap; the model's context is checked after tokenising.
MAX_QUESTION_CHARS = 16_000
DEFAULT_MAX_NEW_TOKENS = 128
# Scoring (train.vlm's final evaluation, medvlm.evaluate, medvlm.compare, medvlm.predict): one cap, so every score of
# a model is read under the same limit. Short answers ("a single word or phrase") fit with room to spare.
EVAL_MAX_NEW_TOKENS = 16
MAX_NEW_TOKENS_LIMIT = 1024
DEFAULT_TEMPERATURE = 0.0

# Packing (medvlm.packing): questions about one image share one row behind the image's prompt prefix, in training
# rows (train.vlm --pack_size) and in batched greedy answers alike. More would make rows long and padding wasteful.
PACK_SIZE = 12
# The app's model pool (medvlm.host): the share of GPU memory (or RAM) its in-process models may fill together before
# the least recently used is unloaded; python app.py --pool_gb overrides it.
POOL_MEMORY_SHARE = 0.6
# ZeroGPU (medvlm.zerogpu): seconds of GPU a chat answer and a batch of a dataset comparison may take. A Space's
# visitors spend a daily GPU quota by these, so they are what the longest answer (MAX_NEW_TOKENS_LIMIT) and a batch
# of COMPARE_BATCH_SIZE images need on a ZeroGPU slice, not more.
CHAT_GPU_SECONDS = 60
COMPARE_BATCH_GPU_SECONDS = 90
# Label value of tokens the loss ignores (prompt, image, padding): PyTorch's cross-entropy default.
IGNORE_INDEX = -100

# Models behind an OpenAI-compatible server (medvlm.remote, medvlm.serve).
REMOTE_CONNECT_TIMEOUT_S = 5.0
# How long a server's "answers now" (or why not) stands for the picker, a page load and a live battle's draw: asked
# once per this many seconds, not on every page load (a stuck server would hold each for the connect timeout). The
# picker's "Check the models again" asks at once.
SERVER_CHECK_S = 30.0
REMOTE_TIMEOUT_S = 120.0  # the longest wait for the next bytes of an answer (a 7B's first token under load)
REMOTE_RETRIES = 2  # a 429 or 503 is retried this many times, after the server's Retry-After
REMOTE_CONCURRENCY = 8  # requests in flight at once when a dataset is scored against a server
SERVE_PORT = 8000
SERVE_MAX_BATCH = 8  # requests decoded together by medvlm.serve
SERVE_MAX_WAITING = 64  # requests queued beyond that are refused with 429
SERVE_BATCH_WINDOW_S = 0.01  # after a request arrives at an idle server, how long it waits for others to join its batch

# Switches that keep the app from calling out (hub, telemetry, update checks). A user who sets one keeps it.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_DATASETS_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "DO_NOT_TRACK": "1",
}


def cache_dir() -> Path:
    """Where medvlm keeps what it builds (the assembled MedVLM-Tiny base). Override with MEDVLM_CACHE."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "medvlm"
    return Path(os.environ.get("MEDVLM_CACHE", default))


def apply_offline_env() -> None:
    """Set the offline switches unless the user already chose a value. Call before importing HF libraries."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "medvlm-ultralytics"))
