"""The model layer: a registry of named models, their families, and loading on this machine."""
from medvlm.models.loading import LoadedModel, default_device, load, unavailable_reason
from medvlm.models.registry import REGISTRY, ModelSpec, resolve

__all__ = ["REGISTRY", "LoadedModel", "ModelSpec", "default_device", "load", "resolve", "unavailable_reason"]
