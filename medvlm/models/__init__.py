"""The model layer: a registry of named models, their families, and loading on this machine.

Loading (torch, transformers) is imported on first use, so that a command's --help or a bad flag answers in a moment
instead of after importing torch (5 s here).
"""
import importlib

from medvlm.models.registry import REGISTRY, ModelSpec, resolve

__all__ = ["REGISTRY", "LoadedModel", "ModelSpec", "default_device", "load", "resolve", "unavailable_reason"]
_LOADING = {"LoadedModel", "default_device", "load", "unavailable_reason"}


def __getattr__(name: str):
    if name in _LOADING or name == "loading":
        loading = importlib.import_module("medvlm.models.loading")
        return loading if name == "loading" else getattr(loading, name)
    raise AttributeError(f"module 'medvlm.models' has no attribute {name!r}")
