"""The app's models: a pool of loaded ones that each browser session picks from (which models the picker offers,
whether each can load here, loading, unloading the least recently used to stay within a memory budget) and the
detector (loaded on first use)."""
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from medvlm import chat, models, remote, zerogpu
from medvlm.errors import UserFacingError
from medvlm.models import LoadedModel, ModelSpec
from medvlm.models.loading import resolve_quantize
from medvlm.settings import CHAT_GPU_SECONDS, DEFAULT_MODEL, DETECTOR_WEIGHTS, POOL_MEMORY_SHARE, SERVER_CHECK_S

log = logging.getLogger(__name__)

# An in-process answer, on a ZeroGPU Space under @spaces.GPU (medvlm.zerogpu); a served model's needs no GPU here.
generate = zerogpu.gpu(CHAT_GPU_SECONDS)(chat.stream_reply)


def model_bytes(loaded: LoadedModel) -> int:
    """What a loaded model holds in memory (parameters and buffers); a served model holds nothing here."""
    if remote.is_remote(loaded.spec.source):
        return 0
    tensors = [*loaded.model.parameters(), *loaded.model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def memory_budget(device: str, gigabytes: float | None = None) -> int:
    """Bytes the pool may fill: `gigabytes` if given, else POOL_MEMORY_SHARE of the GPU's memory or of the RAM."""
    if gigabytes is not None:
        return int(gigabytes * 1e9)
    if device.startswith("cuda"):
        total = torch.cuda.get_device_properties(torch.device(device).index or 0).total_memory
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(POOL_MEMORY_SHARE * total)


class ModelHost:
    """Every browser session picks its own model (Chat and Compare answer with it). In-process models stay loaded
    while they fit the memory budget; loading one more unloads the least recently used first, never one that is
    answering or that an admin pinned. Served models cost nothing to hold. Each in-process model generates one answer
    at a time (its own lock); two sessions on two models answer at once."""

    def __init__(self, device: str | None = None, quantize: str = "auto", detector_weights: str | Path = DETECTOR_WEIGHTS,
                 budget_gb: float | None = None):
        self.device = device or models.default_device()
        self.quantize = quantize
        self.budget = memory_budget(self.device, budget_gb)
        self.detector_weights = Path(detector_weights)
        self._detector = None
        self.detector_lock = threading.Lock()  # the detector runs beside the VLM, one image at a time
        self.specs: dict[str, ModelSpec] = dict(models.REGISTRY)
        self.default_name: str | None = None  # what a new session gets
        self.startup_notice = ""  # why the requested model was not the one loaded, shown once in the UI
        self.pinned: set[str] = set()  # admins': never unloaded
        self.reviewer_models: set[str] | None = None  # admins' limit on what reviewers may pick; None: any
        self.pool: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self.pool_bytes: dict[str, int] = {}  # each pooled model's model_bytes, measured once as it joins
        self.busy: Counter[str] = Counter()  # answers (or dataset runs) in progress per model: never unloaded
        self.generating: dict[str, threading.Lock] = {}  # one in-process generation at a time per model
        self.pool_lock = threading.RLock()  # guards pool, busy and the loads in progress
        self.loading: dict[str, threading.Event] = {}
        self.server_checked: dict[str, tuple[float, str | None]] = {}  # a served model's last check: (when, why not)

    def start(self, name: str = DEFAULT_MODEL, adapter: str | None = None, served_model: str | None = None) -> None:
        """Load the requested model (or connect to its server) as every new session's; if it cannot, say why and fall
        back to the default."""
        try:
            spec = models.resolve(name, adapter=adapter, served_model=served_model)
            self.specs[spec.name] = spec
            self.model(spec.name)
            self.default_name = spec.name
            return
        except UserFacingError as e:
            if name == DEFAULT_MODEL:
                self.startup_notice = f"No model loaded: {e}"
                log.error(self.startup_notice)
                return
            self.startup_notice = f"Could not start with {name}: {e} Using {DEFAULT_MODEL} instead."
            log.warning(self.startup_notice)
        self.start(DEFAULT_MODEL)

    # --- the pool ----------------------------------------------------------------------------------------------------

    def model(self, name: str | None) -> LoadedModel:
        """The loaded model `name` (a session's pick; None: the default), loading it first if need be. Raises
        UserFacingError when it cannot load here or the memory it needs is held by models in use or pinned."""
        name = name or self.default_name
        if name is None:
            raise UserFacingError("No model is loaded: pick one that can load here.")
        if name not in self.specs:
            raise UserFacingError(f"Unknown model {name!r}.")
        with self.pool_lock:
            if name in self.pool:
                self.pool.move_to_end(name)
                return self.pool[name]
            waiting = self.loading.get(name)
            if waiting is None:
                self.loading[name] = threading.Event()
        if waiting is not None:  # another session is loading it: wait for that load, not a second one
            waiting.wait()
            with self.pool_lock:
                if name in self.pool:
                    return self.pool[name]
            raise UserFacingError(f"{name} could not be loaded; pick it again to see why.")
        try:
            reason = self.unavailable_reason(name)
            if reason:
                raise UserFacingError(reason)
            spec = self.specs[name]
            self._make_room(self.estimate(spec), keep=name)
            loaded = models.load(spec, self.device, self.quantize)
            with self.pool_lock:
                self._join(loaded)
                self._make_room(0, keep=name)  # the estimate may have been short: measured now
            log.info("loaded %s (%.1f GB); the pool holds %s", name, self.pool_bytes[name] / 1e9, ", ".join(self.pool))
            return loaded
        finally:
            with self.pool_lock:
                self.loading.pop(name).set()

    def adopt(self, loaded: LoadedModel) -> None:
        """Put a model loaded elsewhere (models.load) in the pool; the default for new sessions if there is none yet."""
        with self.pool_lock:
            self.specs[loaded.spec.name] = loaded.spec
            self._join(loaded)
            self.default_name = self.default_name or loaded.spec.name
            self._make_room(0, keep=loaded.spec.name)

    def _join(self, loaded: LoadedModel) -> None:
        """A loaded model enters the pool (callers hold pool_lock), its size measured once."""
        name = loaded.spec.name
        self.pool[name] = loaded
        self.pool_bytes[name] = model_bytes(loaded)
        self.generating.setdefault(name, threading.Lock())

    def estimate(self, spec: ModelSpec) -> int:
        """Bytes the model will hold once loaded (0 for a served one), before it is."""
        if remote.is_remote(spec.source) or not spec.params_billion:
            return 0
        quantize = resolve_quantize(spec, self.device, self.quantize)
        return int(spec.params_billion * 1e9 * (0.55 if quantize == "nf4" else 2 if self.device.startswith("cuda") else 4))

    def _make_room(self, need: int, keep: str) -> None:
        """Unload the least recently used models, not `keep`, not pinned, not in use, until `need` more bytes fit."""
        with self.pool_lock:
            held = sum(self.pool_bytes[name] for name in self.pool)
            for name in list(self.pool):
                if held + need <= self.budget:
                    return
                if name == keep or name in self.pinned or self.busy[name] or self.pool_bytes[name] == 0:
                    continue
                del self.pool[name]
                held -= self.pool_bytes.pop(name)
                log.info("unloaded %s to make room", name)
            if held + need > self.budget and need:
                raise UserFacingError(
                    f"Not enough room for {keep}: the model memory budget ({self.budget / 1e9:.1f} GB) is held by "
                    f"models that are answering or pinned ({', '.join(self.pool)}). Try again shortly.")
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    @contextmanager
    def using(self, name: str | None) -> Iterator[LoadedModel]:
        """The model, kept loaded while the block runs (an answer, a batch)."""
        while True:  # marked busy only if still loaded: another session may have unloaded it in between
            loaded = self.model(name)
            with self.pool_lock:
                if self.pool.get(loaded.spec.name) is loaded:
                    self.busy[loaded.spec.name] += 1
                    break
        try:
            yield loaded
        finally:
            with self.pool_lock:
                self.busy[loaded.spec.name] -= 1

    def stream_reply(self, name: str | None, history: list, question: str, image, settings: chat.GenerationSettings) -> Iterator[str]:
        """Model `name`'s answer as it grows (medvlm.chat.stream_reply). An in-process model generates one answer at a
        time (its lock, held until the answer ends); a server answers many at once."""
        with self.using(name) as loaded:
            if remote.is_remote(loaded.spec.source):
                yield from chat.stream_reply(loaded, history, question, image, settings)
                return
            with self.generating[loaded.spec.name]:
                yield from generate(loaded, history, question, image, settings)

    @contextmanager
    def holding(self, name: str | None):
        """The model and the detector held, for a batch of a dataset comparison: chats and single-image compares wait
        at most one batch, never the whole run."""
        with self.using(name) as loaded, self.detector_lock:
            lock = self.generating.get(loaded.spec.name)
            if lock is None:  # a served model: nothing to take turns on here
                yield loaded
                return
            with lock:
                yield loaded

    def set_rules(self, pinned: list[str], reviewer_models: list[str] | None) -> None:
        """Admins': models never unloaded, and the models reviewers may pick (None or every model: any)."""
        unknown = sorted((set(pinned) | set(reviewer_models or ())) - set(self.specs))
        if unknown:
            raise UserFacingError(f"Unknown model(s): {', '.join(unknown)}.")
        self.pinned = set(pinned)
        everything = reviewer_models is None or set(reviewer_models) >= set(self.specs)
        self.reviewer_models = None if everything else set(reviewer_models)

    def may_pick(self, name: str, admin: bool) -> bool:
        return admin or self.reviewer_models is None or name in self.reviewer_models

    # --- the detector ---------------------------------------------------------------------------------------------

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

    # --- what the picker shows ----------------------------------------------------------------------------------------

    def unavailable_reason(self, name: str, fresh: bool = False) -> str | None:
        """Why the model cannot load or answer here now, or None. A server's answer stands for SERVER_CHECK_S unless
        fresh; the local checks (files, memory) are cheap and made each time."""
        spec = self.specs[name]
        if not remote.is_remote(spec.source):
            return models.unavailable_reason(spec, self.device, self.quantize)
        checked = self.server_checked.get(name)
        if fresh or checked is None or time.monotonic() - checked[0] > SERVER_CHECK_S:
            checked = (time.monotonic(), models.unavailable_reason(spec))
            self.server_checked[name] = checked
        return checked[1]

    def choices(self, fresh: bool = False) -> list[tuple[str, str]]:
        """(label, name) for the picker: every registered model and added server, whether it is loaded or can load
        here (a server that cannot says why, as of its last check; fresh: ask every server now), and whether it is
        pinned or kept from reviewers."""
        labelled = []
        for name, spec in self.specs.items():
            if remote.is_remote(spec.source):
                reason = self.unavailable_reason(name, fresh)
                state = f"unavailable: {reason.removeprefix('The model server at ' + remote.base_url(spec.source) + ' ')}" if reason else "served"
            elif name in self.pool:
                state = "loaded, pinned" if name in self.pinned else "loaded"
            else:
                state = "unavailable here" if self.unavailable_reason(name) else "can load"
            if not self.may_pick(name, admin=False):
                state += ", admins only"
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
        self.server_checked[spec.name] = (time.monotonic(), None)
        return spec.name
