"""The model manager: which versions are loaded, how requests find them, their status.

It plays the part of TF Serving's ServerCore + AspiredVersionsManager with the
AvailabilityPreservingPolicy: a new version is loaded before the old one is unloaded; a
version that fails to load ends in state END with its error (visible in GetModelStatus)
while the previous version keeps serving; version labels may only point at versions that
are available unless --allow_version_labels_for_unavailable_models is set.

Requests never take the manager's lock: `resolve` reads an immutable snapshot that loads
and unloads replace in one assignment, and a request keeps the Servable it resolved even
if that version is unloaded while it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tensorflow_serving.apis import get_model_status_pb2, model_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.server.core import errors
from serving.server.core.servable import Servable
from serving.server.management import config as config_lib
from serving.server.management.loader import load_servable
from serving.server.management.source import VersionWatcher, aspired
from serving.server.management.status import History, State, status_response

log = logging.getLogger("serving.server")


@dataclass(frozen=True)
class ManagerOptions:
    """How versions are found and loaded (the flags of the same names, in seconds)."""

    saved_model_tags: frozenset[str] = frozenset({"serve"})
    file_system_poll_wait_seconds: float = 1.0
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    allow_version_labels_for_unavailable_models: bool = False
    # Called on each freshly loaded servable before it serves (warmup, batching); may raise.
    prepare: Callable[[Servable], None] = lambda servable: None
    # Called on each servable once it stops serving.
    retire: Callable[[Servable], None] = lambda servable: None
    # Called after an unload, once the manager holds no reference to the servable (free it).
    release: Callable[[], None] = lambda: None
    # Called after every load attempt with (servable name, version, path, error or None, seconds).
    on_load: Callable = lambda name, version, path, error, seconds: None


@dataclass
class _Model:
    config: model_server_config_pb2.ModelConfig
    watcher: VersionWatcher
    attempted: set[int] = field(default_factory=set)


class ModelManager:
    """Loads, serves and unloads model versions according to a ModelServerConfig."""

    def __init__(self, options: ManagerOptions, loader=load_servable):
        self.options = options
        self._loader = loader
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._models: dict[str, _Model] = {}
        self._config: model_server_config_pb2.ModelServerConfig | None = None
        self._serving: dict[str, dict[int, Servable]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._history: dict[str, History] = {}
        self._poller: threading.Thread | None = None

    # ------------------------------------------------------------------------ requests
    def resolve(self, spec: model_pb2.ModelSpec) -> Servable:
        """Return the servable a request's ModelSpec names (latest, version or label)."""
        name = spec.name
        if not name:
            raise errors.invalid_argument("ModelSpec has no name specified.")
        versions = self._serving.get(name, {})
        choice = spec.WhichOneof("version_choice")
        if choice == "version":
            version, request = spec.version.value, f"Specific({name}, {spec.version.value})"
        elif choice == "version_label":
            labels = self._labels.get(name, {})
            if spec.version_label not in labels:
                raise errors.invalid_argument(f"Unrecognized servable version label: {spec.version_label}")
            version = labels[spec.version_label]
            request = f"Specific({name}, {version})"
        else:
            version, request = (max(versions) if versions else None), f"Latest({name})"
        servable = versions.get(version)
        if servable is None:
            raise errors.not_found(f"Servable not found for request: {request}")
        return servable

    def model_status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        """Return GetModelStatus's answer: every version ever seen, newest first."""
        return status_response(spec, self._history.get(spec.name, {}))

    # -------------------------------------------------------------------------- config
    def reload(self, new_config: model_server_config_pb2.ModelServerConfig) -> None:
        """Make the served models match `new_config`, as ServerCore::ReloadConfig does.

        Removed models are unloaded, new ones loaded and waited for; raises the status
        TF Serving would return (e.g. UNKNOWN when a new model did not become available).
        """
        with self._lock:
            if self._config is not None and self._config == new_config:
                return
            if new_config.WhichOneof("config") is None:
                log.info("Taking no action for empty config.")
                return
            config_lib.validate(new_config, self._config)
            # The first config is loaded by ConnectSourcesWithFastInitialLoad, whose error
            # counts servables; later ones by ServerCore::ReloadConfig, which counts models.
            noun = "servable(s)" if self._config is None else "model(s)"
            self._labels = self._label_map(new_config)
            self._config = new_config
            wanted = {model.name: model for model in new_config.model_config_list.config}
            for name in [name for name in self._models if name not in wanted]:
                self._remove_model(name)
            new_names = [name for name in wanted if name not in self._models]
            for name, model_config in wanted.items():
                if name in self._models:
                    self._models[name].config = model_config
                    self._models[name].watcher.base_path = model_config.base_path
                else:
                    self._models[name] = _Model(model_config, VersionWatcher(name, model_config.base_path))
            self._await_new_models(new_names, noun)
            for name in wanted:
                if name not in new_names:
                    self._reconcile(name)

    def _label_map(self, new_config) -> dict[str, dict[str, int]]:
        labels: dict[str, dict[str, int]] = {}
        for model in new_config.model_config_list.config:
            for label, version in sorted(model.version_labels.items()):
                allowed = False
                if self.options.allow_version_labels_for_unavailable_models:
                    existing = self._labels.get(model.name, {}).get(label)
                    allowed = existing is None or existing == version
                if not allowed and version not in self._serving.get(model.name, {}):
                    raise errors.failed_precondition(
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference"
                    )
                labels.setdefault(model.name, {})[label] = version
        return labels

    def _await_new_models(self, names: list[str], noun: str) -> None:
        """Load new models, waiting (as TF Serving does) until each version has settled."""
        settle = min(max(self.options.file_system_poll_wait_seconds, 0.05), 0.25)
        pending = list(names)
        while pending:
            for name in pending:
                self._reconcile(name)
            pending = [name for name in pending if not self._settled(name)]
            if pending and self._stopping.wait(settle):
                raise errors.unavailable("the server is shutting down")
            settle = max(self.options.file_system_poll_wait_seconds, settle)
        failures = []
        for name in names:
            for version, (state, error) in sorted(self._history.get(name, {}).items()):
                if state == State.END and error is not None:
                    failures.append(f"{{{{name: {name} version: {version}}} due to error: "
                                    f"{error.status_string()}}}, ")
        if failures:
            raise errors.unknown(
                f"{len(failures)} {noun} did not become available: {{{''.join(failures)}}}"
            )

    def _settled(self, name: str) -> bool:
        model = self._models[name]
        complete = {version for version in model.attempted}
        if not complete:
            return False
        wanted = aspired(model.config.model_version_policy, dict.fromkeys(complete, ""))
        history = self._history.get(name, {})
        return all(history.get(version, (State.START,))[0] in (State.AVAILABLE, State.END) for version in wanted)

    # ------------------------------------------------------------------------- polling
    def poll(self) -> None:
        """Bring every model in line with its base path once (one file-system poll)."""
        with self._lock:
            for name in list(self._models):
                self._reconcile(name)

    def start_polling(self) -> None:
        """Poll the file system every --file_system_poll_wait_seconds in a daemon thread."""
        interval = self.options.file_system_poll_wait_seconds
        if interval <= 0 or self._poller is not None:
            return

        def loop():
            while not self._stopping.wait(interval):
                try:
                    self.poll()
                except Exception:
                    log.exception("file system poll failed")

        self._poller = threading.Thread(target=loop, name="fs-poll", daemon=True)
        self._poller.start()

    def interrupt(self) -> None:
        """Make waits for models and load retries give up (the server is stopping)."""
        self._stopping.set()

    def stop(self) -> None:
        """Stop polling and unload everything."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        with self._lock:
            for name in list(self._models):
                self._remove_model(name)

    # ----------------------------------------------------------------- load and unload
    def _reconcile(self, name: str) -> None:
        model = self._models[name]
        complete = model.watcher.poll(known=model.attempted)
        if complete is None:
            return
        model.attempted &= set(complete)
        wanted = aspired(model.config.model_version_policy, complete)
        for version in sorted(wanted, reverse=True):
            if version not in model.attempted and not self._stopping.is_set():
                model.attempted.add(version)
                self._load(name, version, wanted[version])
        self._unload_unaspired(name, set(wanted))

    def _unload_unaspired(self, name: str, wanted: set[int]) -> None:
        while (version := self._next_to_unload(name, wanted)) is not None:
            self._unload(name, version)

    def _next_to_unload(self, name: str, wanted: set[int]) -> int | None:
        """Return the oldest unaspired version that can go (a number: no frame holds it)."""
        loaded = self._serving.get(name, {})
        unaspired = sorted(version for version in loaded if version not in wanted)
        aspired_serving = any(version in wanted for version in loaded)
        if not unaspired or not (not wanted or aspired_serving or len(unaspired) > 1):
            return None
        return unaspired[0]

    def _load(self, name: str, version: int, path: str) -> None:
        self._record(name, version, State.LOADING, None)
        log.info("Loading servable: {name: %s version: %d} from %s", name, version, path)
        attempts = 1 + max(self.options.max_num_load_retries, 0)
        error = None
        for attempt in range(attempts):
            started = time.perf_counter()
            try:
                servable = self._loader(name, version, path, set(self.options.saved_model_tags))
                self.options.prepare(servable)
            except Exception as failure:
                error = errors.from_exception(failure)
                self.options.on_load(name, version, path, error, time.perf_counter() - started)
                log.error("Loading servable: {name: %s version: %d} failed: %s", name, version, error.status_string())
                if attempt + 1 < attempts and self._stopping.wait(self.options.load_retry_interval_seconds):
                    break
                continue
            self.options.on_load(name, version, path, None, time.perf_counter() - started)
            self._publish(name, {**self._serving.get(name, {}), version: servable})
            self._record(name, version, State.AVAILABLE, None)
            log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
            return
        self._record(name, version, State.END, error)

    def _unload(self, name: str, version: int) -> None:
        versions = dict(self._serving.get(name, {}))
        servable = versions.pop(version)
        self._record(name, version, State.UNLOADING, None)
        self._publish(name, versions)
        self.options.retire(servable)
        del servable, versions
        self._record(name, version, State.END, None)
        if name in self._models:
            # An unloaded version may be aspired again (the newer one's folder deleted under
            # `latest N`); only versions that failed to load stay attempted, as in TF Serving.
            self._models[name].attempted.discard(version)
        self.options.release()
        log.info("Unloaded servable version {name: %s version: %d}", name, version)

    def _remove_model(self, name: str) -> None:
        for version in sorted(self._serving.get(name, {})):
            self._unload(name, version)
        self._models.pop(name, None)
        self._serving = {key: value for key, value in self._serving.items() if key != name}

    def _publish(self, name: str, versions: dict[int, Servable]) -> None:
        # One assignment swaps the snapshot readers see; never mutate the published dicts.
        self._serving = {**self._serving, name: versions}

    def _record(self, name: str, version: int, state: int, error) -> None:
        self._history = {
            **self._history, name: {**self._history.get(name, {}), version: (state, error)}
        }
