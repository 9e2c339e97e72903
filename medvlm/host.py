"""The app's one loaded model (which models the picker offers, whether each can load here, switching) and its
detector (loaded on first use)."""
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medvlm import chat, models, remote
from medvlm.errors import UserFacingError
from medvlm.models import LoadedModel, ModelSpec, card
from medvlm.settings import DEFAULT_MODEL, DETECTOR_WEIGHTS

log = logging.getLogger(__name__)


class ModelHost:
    def __init__(self, device: str | None = None, quantize: str = "auto", detector_weights: str | Path = DETECTOR_WEIGHTS):
        self.device = device or models.default_device()
        self.quantize = quantize
        self.detector_weights = Path(detector_weights)
        self._detector = None
        self.detector_lock = threading.Lock()  # the detector runs beside the VLM, one image at a time
        self.specs: dict[str, ModelSpec] = dict(models.REGISTRY)
        self.current: LoadedModel | None = None
        self.startup_notice = ""  # why the requested model was not the one loaded, shown once in the UI
        # Held while a model generates or loads: a switch never pulls a model out from under a running answer.
        self.lock = threading.Lock()

    def start(self, name: str = DEFAULT_MODEL, adapter: str | None = None, served_model: str | None = None) -> None:
        """Load the requested model (or connect to its server); if it cannot, say why and fall back to the default."""
        try:
            spec = models.resolve(name, adapter=adapter, served_model=served_model)
            self.specs[spec.name] = spec
            self.current = models.load(spec, self.device, self.quantize)
            return
        except UserFacingError as e:
            if name == DEFAULT_MODEL:
                self.startup_notice = f"No model loaded: {e}"
                log.error(self.startup_notice)
                return
            self.startup_notice = f"Could not start with {name}: {e} Using {DEFAULT_MODEL} instead."
            log.warning(self.startup_notice)
        self.start(DEFAULT_MODEL)

    def stream_reply(self, history: list, question: str, image, settings: chat.GenerationSettings) -> Iterator[str]:
        """The loaded model's answer as it grows (medvlm.chat.stream_reply), one in-process generation at a time: the
        lock is held until the answer ends, so a switch never pulls a model out from under it."""
        with self.lock:
            current = self.current
            if current is None:
                raise UserFacingError("No model is loaded: pick one that can load here.")
            if not isinstance(current, remote.RemoteModel):
                yield from chat.stream_reply(current, history, question, image, settings)
                return
        # A server answers many at once, and its client stays usable after a switch: no lock while it streams.
        yield from chat.stream_reply(current, history, question, image, settings)

    @contextmanager
    def holding(self):
        """Both models held, for a batch of a dataset comparison: chats and single-image compares wait at most one
        batch, never the whole run."""
        with self.lock, self.detector_lock:
            yield

    def detector(self):
        """The detector (medvlm.detect.Detector), loaded on first use; callers hold detector_lock while it runs."""
        from medvlm.detect import Detector

        with self.detector_lock:
            if self._detector is None:
                self._detector = Detector(self.detector_weights, device="cpu" if self.device == "cpu" else "0")
            return self._detector

    def detect(self, image):
        """The detector's findings on an image (medvlm.detect.Detection list)."""
        detector = self.detector()
        with self.detector_lock:
            return detector.predict(image)

    @property
    def current_name(self) -> str | None:
        return self.current.spec.name if self.current else None

    def unavailable_reason(self, name: str) -> str | None:
        return models.unavailable_reason(self.specs[name], self.device, self.quantize)

    def choices(self) -> list[tuple[str, str]]:
        """(label, name) for the picker: every registered model and added server, and whether it can answer here
        (a server that cannot says why: it is asked on each call, so the picker is current when it opens)."""
        labelled = []
        for name, spec in self.specs.items():
            if remote.is_remote(spec.source):
                reason = self.unavailable_reason(name)
                loaded = "loaded" if name == self.current_name else "served"
                state = f"unavailable: {reason.removeprefix('The model server at ' + remote.base_url(spec.source) + ' ')}" if reason else loaded
            elif name == self.current_name:
                state = "loaded"
            else:
                state = "unavailable here" if self.unavailable_reason(name) else "can load"
            labelled.append((f"{name} ({state})", name))
        return labelled

    def add_server(self, url: str, served_model: str, api_key: str | None = None) -> str:
        """Offer a model on an OpenAI-compatible server in the picker -> its name. Raises UserFacingError when the
        address is not one or the server cannot answer for it now."""
        source = url.strip() if remote.is_remote(url.strip()) else remote.PREFIX + url.strip()
        spec = models.resolve(source, served_model=served_model, api_key=(api_key or "").strip() or None)
        reason = models.unavailable_reason(spec)
        if reason:
            raise UserFacingError(reason)
        self.specs[spec.name] = spec
        return spec.name

    def switch(self, name: str) -> LoadedModel:
        """Load `name` in place of the current model. On failure the current model stays."""
        if name not in self.specs:
            raise UserFacingError(f"Unknown model {name!r}.")
        if name == self.current_name:
            return self.current
        reason = self.unavailable_reason(name)
        if reason:
            raise UserFacingError(reason)
        with self.lock:
            loaded = models.load(self.specs[name], self.device, self.quantize)
            self.current = loaded
        return loaded

    def describe(self) -> str:
        """Markdown about the loaded model for the UI, including what its answers can be trusted for."""
        if self.current is None:
            return "**No model loaded.** " + self.startup_notice
        spec = self.current.spec
        if remote.is_remote(spec.source):
            return "\n\n".join([f"**{spec.served_model}** on a server", spec.description,
                                  "Its answers are only as trustworthy as the model the server runs: medvlm cannot see its weights."])
        model = self.current.model
        precision = "4-bit nf4" if getattr(model, "is_loaded_in_4bit", False) else str(model.dtype).replace("torch.", "")
        lines = [f"**{spec.name}** on {self.current.device} ({precision})", spec.description]
        if spec.adapter:
            lines.append(f"Adapter: `{Path(spec.adapter).name}`")
            lines += card.summary(spec.adapter)
        if spec.source == models.registry.MEDVLM_TINY_SOURCE:
            if spec.adapter:
                lines.append(
                    "⚠️ **A 135M-parameter research model:** it answers in a word or phrase and is often wrong. "
                    "It reads the image for what its label questions taught (tumour or not, tumour type, body region), "
                    "in wordings it never trained on too, but not equally well in each (the figures above give its worst "
                    "wording); its answers to other questions barely change when the image is swapped: they come mostly "
                    "from the question's wording. Use it to try the app, not to read scans."
                )
            else:
                lines.append(
                    "⚠️ **Not yet image-grounded:** MedVLM-Tiny's image projector is untrained, so its answers come from "
                    "the language model alone and do not reflect the image. Use it to try the app, not to read scans."
                )
        return "\n\n".join(line for line in lines if line)
