"""Pretraining checkpoints in object storage, complete or absent.

A checkpoint of epoch ``e`` is two objects under the store's root::

    ckpt-<e:06d>/state.pt        torch.save of a dict of tensors and plain values
    ckpt-<e:06d>/MANIFEST.json   {"epoch", "step", "files": {"state.pt": {"sha256", "size"}}}

The manifest is written *last*, so object stores without multi-object
transactions (S3) still give all-or-nothing semantics: a reader takes the
newest manifest whose digest matches its ``state.pt`` and ignores (with a
warning) anything incomplete or corrupt. Only the ``keep`` newest complete
checkpoints are retained; older ones lose their manifest first, so a deletion
that is interrupted leaves only an ignorable fragment.

The state is read back with ``torch.load(weights_only=True)``: no arbitrary
objects are unpickled, which is why RNG states are stored as tensors and lists.

Training does not wait for storage: :class:`CheckpointWriter` copies the state
to host memory (the only pause of the training loop, a device-to-host copy)
and serialises and writes it on one background thread, one checkpoint at a
time. A process killed mid-write leaves at most a fragment without manifest,
so the previous checkpoint stays the newest valid one.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import random
import re
import threading
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np
import torch

from kubeclr.errors import IntegrityError, ObjectNotFound

log = logging.getLogger(__name__)

FORMAT = 1
STATE = "state.pt"
MANIFEST = "MANIFEST.json"
_DIR = re.compile(r"^ckpt-(\d{6,})/")


class Store(Protocol):
    """Object storage as training sees it: relative '/'-separated keys under one root.

    :mod:`kubeclr.storage.store` opens one from a URI (local directory or S3);
    the core never learns which backend sits behind it.
    """

    uri: str

    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def get_file(self, key: str, dest: Path) -> None: ...
    def put_file(self, src: Path, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def list_objects(self, prefix: str = "") -> list[tuple[str, int, str]]: ...
    def delete(self, key: str) -> None: ...


def checkpoint_dir(epoch: int) -> str:
    return f"ckpt-{epoch:06d}"


def _epochs(keys: list[str], name: str) -> list[int]:
    """Epochs of the checkpoint folders that contain object ``name``, newest first."""
    found = set()
    for key in keys:
        m = _DIR.match(key)
        if m and key == f"{m.group(0)}{name}":
            found.add(int(m.group(1)))
    return sorted(found, reverse=True)


def save_checkpoint(store: Store, epoch: int, state: Mapping[str, Any], *, keep: int = 2) -> str:
    """Write the checkpoint of ``epoch``, then prune to the ``keep`` newest.

    Args:
        store: where checkpoints live (only rank 0 should call this).
        epoch: completed epochs (1-based), names the folder.
        state: tensors, numbers, strings, lists and dicts of them.
        keep: complete checkpoints to retain (>= 1).

    Returns:
        The checkpoint's folder key (``ckpt-000003``).
    """
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    blob = buf.getvalue()
    folder = checkpoint_dir(epoch)
    store.write_bytes(f"{folder}/{STATE}", blob)
    manifest = {
        "format": FORMAT,
        "epoch": epoch,
        "step": int(state.get("step", 0)),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {STATE: {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}},
    }
    store.write_bytes(f"{folder}/{MANIFEST}", json.dumps(manifest, indent=2).encode())
    log.info("checkpoint %s/%s written (%.1f MB)", store.uri, folder, len(blob) / 1e6)
    _prune(store, newest=epoch, keep=max(1, keep))
    return folder


def _prune(store: Store, *, newest: int, keep: int) -> None:
    keys = store.list("ckpt-")
    complete = [e for e in _epochs(keys, MANIFEST) if e <= newest]
    stale = set(complete[keep:])
    # Fragments (a state.pt without manifest) older than the newest complete one are dead too.
    stale |= {e for e in _epochs(keys, STATE) if e < newest and e not in complete}
    for epoch in sorted(stale):
        folder = checkpoint_dir(epoch)
        store.delete(f"{folder}/{MANIFEST}")  # manifest first: a half-deleted checkpoint is incomplete
        store.delete(f"{folder}/{STATE}")


class CheckpointWriter:
    """Writes checkpoints through ``store`` on a background thread, at most one in flight.

    :meth:`submit` first waits for the previous write, then copies the state to
    host memory (:func:`host_copy`) and returns; a thread serialises it and runs
    :func:`save_checkpoint` (manifest last, then pruning). An error of that
    thread is logged when it happens and raised in the caller's thread by the
    next :meth:`submit` or by :meth:`wait`, which must be called at the end of
    training so that the last checkpoint is durable before the run reports success.

    Args:
        store: where checkpoints live (only rank 0 writes).
        keep: complete checkpoints to retain (see :func:`save_checkpoint`).
    """

    def __init__(self, store: Store, *, keep: int = 2) -> None:
        self.store = store
        self.keep = keep
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, epoch: int, state: Mapping[str, Any]) -> None:
        """Snapshot ``state`` now and write it as the checkpoint of ``epoch`` in the background.

        Raises:
            Exception: whatever the previous write raised (it is not retried).
        """
        self.wait()
        snapshot = host_copy(dict(state))  # later in-place updates of the live tensors must not leak in
        thread = threading.Thread(target=self._write, args=(epoch, snapshot), name=f"checkpoint-{epoch}")
        thread.start()  # not a daemon: a run that ends (or fails) normally still finishes its write
        self._thread = _in_flight[self.store.uri] = thread

    def wait(self) -> None:
        """Block until the write in flight, if any, is done; raise its error, once."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _write(self, epoch: int, snapshot: dict[str, Any]) -> None:
        try:
            save_checkpoint(self.store, epoch, snapshot, keep=self.keep)
        except BaseException as exc:  # handed to the training thread by wait(); logged now in case it never asks
            self._error = exc
            log.error("checkpoint %s/%s not written: %s", self.store.uri, checkpoint_dir(epoch), exc)


# The write in flight per store URI, so that this process reads its own writes: a reader
# (load_latest) waits for it, e.g. when a run that failed mid-write is retried in-process.
_in_flight: weakref.WeakValueDictionary[str, threading.Thread] = weakref.WeakValueDictionary()


def _await_own_write(store: Store) -> None:
    thread = _in_flight.get(store.uri)
    if thread is not None:
        thread.join()


def host_copy(obj: Any) -> Any:
    """A deep copy of ``obj`` whose tensors are all in CPU memory and share nothing with the originals.

    Device tensors are copied into pinned host memory without blocking, then each
    device is synchronised once, so a checkpoint stalls the accelerator for the
    copy only; CPU tensors are cloned. Strides are kept (a ``channels_last``
    weight stays ``channels_last``), and so is a state dict's ``_metadata``.

    Args:
        obj: tensors, and dicts, lists and tuples of them and of plain values.

    Returns:
        The copy.
    """
    synchronise: set[torch.device] = set()
    copied = _host_copy(obj, synchronise)
    for device in synchronise:
        torch.cuda.synchronize(device)
    return copied


def _host_copy(obj: Any, synchronise: set[torch.device]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach()
        if tensor.device.type == "cpu":
            return tensor.clone()
        pinned = tensor.device.type == "cuda"  # an asynchronous copy needs page-locked memory
        out = torch.empty_like(tensor, device="cpu", pin_memory=pinned)
        out.copy_(tensor, non_blocking=pinned)
        if pinned:
            synchronise.add(tensor.device)
        return out
    if isinstance(obj, dict):
        copied = type(obj)()  # dict or OrderedDict (a module's state dict)
        for key, value in obj.items():
            copied[key] = _host_copy(value, synchronise)
        if hasattr(obj, "__dict__"):  # a module state dict's _metadata (versions its layers load by)
            copied.__dict__.update(copy.deepcopy(obj.__dict__))
        return copied
    if isinstance(obj, (list, tuple)):
        return type(obj)(_host_copy(v, synchronise) for v in obj)
    return copy.deepcopy(obj)


def list_checkpoints(store: Store) -> list[int]:
    """Epochs that have a manifest (not yet verified), newest first."""
    _await_own_write(store)
    return _epochs(store.list("ckpt-"), MANIFEST)


def load_latest(store: Store) -> tuple[int, dict[str, Any]] | None:
    """Load the newest complete checkpoint whose digest verifies.

    Incomplete (no manifest) or corrupt (bad manifest, size or digest,
    unloadable state) checkpoints are skipped with a warning.

    Args:
        store: where the checkpoints are.

    Returns:
        ``(epoch, state)`` with tensors on the CPU, or ``None`` when none is usable.
    """
    _await_own_write(store)
    keys = store.list("ckpt-")
    complete = _epochs(keys, MANIFEST)
    for epoch in _epochs(keys, STATE):
        if epoch not in complete and (not complete or epoch > complete[0]):
            log.warning("ignoring incomplete checkpoint %s/%s (no %s)", store.uri, checkpoint_dir(epoch), MANIFEST)
    for epoch in complete:
        state = _read_verified(store, epoch)
        if state is not None:
            return epoch, state
    return None


def _read_verified(store: Store, epoch: int) -> dict[str, Any] | None:
    folder = checkpoint_dir(epoch)
    where = f"{store.uri}/{folder}"
    try:
        manifest = json.loads(store.read_bytes(f"{folder}/{MANIFEST}"))
        expected = manifest["files"][STATE]
        if not isinstance(expected, dict):
            raise ValueError(f"{MANIFEST} has no entry for {STATE}")
        blob = store.read_bytes(f"{folder}/{STATE}")
    except (ObjectNotFound, IntegrityError, ValueError, KeyError, TypeError) as exc:
        # a missing, corrupt or malformed checkpoint is skipped for an older one; any other
        # StorageError (store unreachable, server error) propagates: resuming from an older
        # checkpoint, or from none, while the newest is merely unreadable would lose work
        log.warning("ignoring checkpoint %s: %s", where, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    if len(blob) != expected.get("size") or hashlib.sha256(blob).hexdigest() != expected.get("sha256"):
        log.warning("ignoring checkpoint %s: %s does not match its manifest digest", where, STATE)
        return None
    try:
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:
        log.warning("ignoring checkpoint %s: cannot load %s (%s)", where, STATE, type(exc).__name__)
        return None


# -- RNG state as weights_only-loadable values -------------------------------


def capture_rng(generators: Mapping[str, torch.Generator]) -> dict[str, Any]:
    """Every RNG this process draws from, as tensors, ints, strings and lists.

    The default CUDA generators are not captured: the training loop draws on the
    device only from its explicit augmentation generator (checkpoints written
    before held them under ``"cuda"``; they are ignored).

    Args:
        generators: named explicit generators (data shuffle, augmentation).

    Returns:
        ``{"python", "numpy", "torch", "generators", "devices"}``; ``devices``
        names each generator's device (``"cpu"``, ``"cuda:0"``).
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in generators.items()},
        "devices": {k: str(g.device) for k, g in generators.items()},
    }


def rng_mismatch(state: Mapping[str, Any], name: str, generator: torch.Generator) -> str | None:
    """Why generator ``name``'s saved state cannot go into ``generator``, or ``None`` when it can.

    A generator's state is device-specific (a CPU Mersenne Twister: 5056 bytes;
    a CUDA Philox seed and offset: 16 bytes). Checkpoints without ``devices``
    are judged by the state's size alone.
    """
    saved = state["generators"].get(name)
    if saved is None:
        return f"no {name} state in the checkpoint"
    device = state.get("devices", {}).get(name)
    if device is not None and torch.device(device).type != generator.device.type:
        return f"{name} state saved on {device}, resuming on {generator.device}"
    size = generator.get_state().numel()
    if saved.numel() != size:
        return f"{name} state of {saved.numel()} bytes from another device, resuming on {generator.device} ({size})"
    return None


def restore_rng(state: Mapping[str, Any], generators: Mapping[str, torch.Generator]) -> dict[str, str]:
    """Inverse of :func:`capture_rng`, for the generators whose saved state fits.

    Returns:
        ``{name: reason}`` of the generators left as they were because their
        state came from another device type (see :func:`rng_mismatch`); empty
        when every stream was restored.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    skipped = {}
    for key, gen in generators.items():
        why = rng_mismatch(state, key, gen)
        if why is None:
            gen.set_state(state["generators"][key])
        else:
            skipped[key] = why
    return skipped
