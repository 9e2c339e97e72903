"""Load a ModelSpec on this machine: device, precision, 4-bit quantisation, PEFT adapter; or say why it can't."""
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from medvlm.errors import UserFacingError
from medvlm.models.families import FAMILIES, Family
from medvlm.models.registry import MEDVLM_TINY_SOURCE, ModelSpec, cached_hub_file, gated_message, hub_missing_message, looks_like_path
from medvlm.settings import QUANTIZE_CHOICES

# Models this large get nf4 on CUDA under quantize="auto"; smaller ones load in fp16.
AUTO_4BIT_MIN_PARAMS_BILLION = 3.0


@dataclass
class LoadedModel:
    spec: ModelSpec
    family: Family
    model: torch.nn.Module
    processor: object
    device: str

    @property
    def tokenizer(self):
        return self.processor.tokenizer


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_quantize(spec: ModelSpec, device: str, quantize: str) -> str | None:
    """"nf4" or None. auto: nf4 for big models on CUDA, never on CPU (fp32 there)."""
    if quantize not in QUANTIZE_CHOICES:
        raise UserFacingError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, not {quantize!r}.")
    if quantize == "auto":
        big = (spec.params_billion or 0) >= AUTO_4BIT_MIN_PARAMS_BILLION
        return "nf4" if device.startswith("cuda") and big and FAMILIES[spec.family].quantizable else None
    return None if quantize == "none" else "nf4"


def from_pretrained_kwargs(device: str, quantize: str | None, dtype: torch.dtype | None = None) -> dict:
    """Keyword arguments shared by every family's from_pretrained. dtype: the compute dtype on CUDA (fp16 default)."""
    compute = (dtype or torch.float16) if device.startswith("cuda") else torch.float32
    if quantize == "nf4":
        from transformers import BitsAndBytesConfig

        return {
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            ),
            "dtype": compute,
            "device_map": {"": device},
        }
    return {"dtype": compute, "device_map": {"": device}}


def unavailable_reason(spec: ModelSpec, device: str | None = None, quantize: str = "auto") -> str | None:
    """Why `spec` cannot load here (one line naming what is missing and how to provide it), or None.

    Cheap: looks at the local cache, installed packages and memory; loads nothing.
    """
    from medvlm import remote

    if remote.is_remote(spec.source):
        return remote.problem(spec)
    device = device or default_device()
    if spec.source == MEDVLM_TINY_SOURCE:
        from medvlm.models.tiny import missing_parts_message

        reason = missing_parts_message()
        if reason:
            return reason
    else:
        reason = _source_reason(spec.source)
        if reason:
            return reason
    if spec.adapter:
        reason = adapter_reason(spec.adapter)
        if reason:
            return reason
    return _memory_reason(spec, device, resolve_quantize(spec, device, quantize))


def _source_reason(source: str) -> str | None:
    if Path(source).expanduser().is_dir():
        return None if (Path(source).expanduser() / "config.json").is_file() else f"{source} has no config.json."
    if looks_like_path(source):
        return f"No model folder at {source}."
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "false", "False", ""):
        if cached_hub_file(source, "config.json") is None:
            return hub_missing_message(source)
    return None


def adapter_reason(adapter: str) -> str | None:
    folder = Path(adapter).expanduser()
    if folder.is_dir():
        return None if (folder / "adapter_config.json").is_file() else f"{adapter} has no adapter_config.json."
    if looks_like_path(adapter):
        return f"No adapter folder at {adapter}."
    if cached_hub_file(adapter, "adapter_config.json") is None:
        return "adapter " + hub_missing_message(adapter).replace("--model PATH", "--adapter PATH")
    return None


def _memory_reason(spec: ModelSpec, device: str, quantize: str | None) -> str | None:
    if not spec.params_billion:
        return None
    bytes_per_param = 0.55 if quantize == "nf4" else (2 if device.startswith("cuda") else 4)
    need_gb = spec.params_billion * bytes_per_param * 1.15  # activations, buffers
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        have_gb = torch.cuda.get_device_properties(index).total_memory / 1e9
        where = "GPU memory"
    else:
        have_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
        where = "RAM (no CUDA GPU here)"
    if need_gb <= have_gb * 0.9:
        return None
    hint = "a CUDA GPU with 4-bit loading" if not device.startswith("cuda") else "--quantize nf4 or a larger GPU"
    return f"{spec.name} needs about {need_gb:.0f} GB on {device}; this machine has {have_gb:.0f} GB {where}: use {hint}."


def load(spec: ModelSpec, device: str | None = None, quantize: str = "auto", dtype: torch.dtype | None = None) -> LoadedModel:
    """Load the model, processor and adapter, or connect to its server (a medvlm.remote.RemoteModel, used alike).
    Raises UserFacingError naming what is missing."""
    from medvlm import remote

    device = device or default_device()
    reason = unavailable_reason(spec, device, quantize)
    if reason:
        raise UserFacingError(reason)
    if remote.is_remote(spec.source):
        return remote.RemoteModel(spec)
    family = FAMILIES[spec.family]
    kwargs = from_pretrained_kwargs(device, resolve_quantize(spec, device, quantize), dtype)
    try:
        model, processor = family.load(spec.source, **kwargs)
    except (OSError, ValueError, ImportError, RuntimeError) as e:
        if "gated" in str(e).lower():  # the hub refused: no token, or the model's terms not accepted
            raise UserFacingError(gated_message(spec.source)) from e
        raise UserFacingError(f"Could not load {spec.name}: {_first_line(e)}") from e
    if spec.adapter:
        model = attach_adapter(model, spec.adapter)
    model.eval()
    processor.tokenizer.padding_side = "left"  # batched generation pads on the left
    return LoadedModel(spec=spec, family=family, model=model, processor=processor, device=device)


def attach_adapter(model, adapter: str, trainable: bool = False):
    """Wrap `model` with a saved PEFT adapter (LoRA/QLoRA, plus any modules_to_save such as a projector); trainable
    to train it on (train.vlm --init_adapter)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise UserFacingError(f"Could not load adapter {adapter}: {_first_line(e)}") from e


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
