"""Pretraining checkpoints in object storage, complete or absent, and how a run resumes from one.

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

A run's state (:func:`save_run`, :func:`restore_run`) is the model, optimiser,
scheduler and grad-scaler state dicts, the epoch and step, every rank's RNG
streams, the config and the history so far. With the same world size and
device type a resumed run draws exactly the random numbers the saved one would
have drawn: on the CPU it continues bitwise where that one stopped; on CUDA it
is RNG-exact but not bitwise, since cuDNN's choice of algorithm, atomic-add
reductions and inductor's kernels are not deterministic (no
``torch.use_deterministic_algorithms`` is set).
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

from kubeclr.config import Config, PretrainConfig
from kubeclr.core import distributed
from kubeclr.errors import IntegrityError, ObjectNotFound, UserError

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
    from kubeclr.core.model import read_state_dict  # here: torchvision, which model imports, is slow to import

    try:
        return read_state_dict(blob, STATE, ValueError)
    except ValueError as exc:
        log.warning("ignoring checkpoint %s: cannot load %s", where, exc)
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


# -- a training run's state: what is saved, and how a run is resumed from it -------------------


def checkpoint_due(epoch: int, pc: PretrainConfig) -> bool:
    """A checkpoint is written every ``checkpoint_every`` epochs and after the last one."""
    return epoch == pc.epochs or (pc.checkpoint_every > 0 and epoch % pc.checkpoint_every == 0)


def save_run(
    writer: CheckpointWriter,
    epoch: int,
    step: int,
    parts: dict[str, Any],
    gens: dict[str, torch.Generator],
    cfg: Config,
    history: list[dict],
    rank: int,
) -> None:
    """Checkpoint on rank 0; every rank contributes its RNG state (a collective).

    Rank 0 pauses only to copy the state to host memory; ``writer`` serialises
    and stores it in the background (call ``writer.wait()`` when training ends).
    """
    rng = distributed.all_gather_object(capture_rng(gens))  # [rank0, rank1, …]
    if rank != 0:
        return
    state = {name: part.state_dict() for name, part in parts.items()}
    state.update(epoch=epoch, step=step, rng=rng, config=cfg.to_dict(), history=history)
    writer.submit(epoch, state)


def restore_run(
    state: dict[str, Any],
    parts: dict[str, Any],
    gens: dict[str, torch.Generator],
    cfg: Config,
    rank: int,
    world: int,
    store: Store,
) -> list[dict[str, Any]]:
    """Load a checkpoint's state into the live objects; returns its history."""
    saved = state.get("config", {})
    if saved.get("model") != cfg.to_dict()["model"]:
        raise UserError(
            f"checkpoint at {store.uri} was written for a different model config "
            f"({saved.get('model')}); use another checkpoint URI"
        )
    changed = [
        f"{s}.{k}"
        for s in ("augment", "pretrain")
        for k, v in cfg.to_dict()[s].items()
        if saved.get(s, {}).get(k) != v and k != "device"
    ]
    if changed:
        log.warning("resuming %s with changed settings: %s", store.uri, ", ".join(changed))
    for name, part in parts.items():
        if state.get(name):
            part.load_state_dict(state[name])
    _restore_rng(state["rng"], gens, rank, world)
    log.info("resumed from %s at epoch %d", store.uri, state["epoch"])
    return [dict(r) for r in state["history"]]


def _restore_rng(rng: list[dict[str, Any]], gens: dict[str, torch.Generator], rank: int, world: int) -> None:
    """Restore this rank's RNG streams; re-seed, with one warning, those that cannot be matched.

    Another world size: the shuffle is shared (rank 0's is taken), the per-rank
    augmentation streams cannot be matched. A generator whose state was saved on
    another device type (a CUDA checkpoint resumed on CPU, or the reverse) cannot
    take it either. Such a generator goes back to its own seed (``pretrain.seed``
    and the rank), so the resumed run is still deterministic.
    """
    if len(rng) == world:
        skipped = restore_rng(rng[rank], gens)
    else:
        skipped = restore_rng(rng[0], {"shuffle": gens["shuffle"]})
        why = f"checkpoint written by {len(rng)} processes, resuming with {world}"
        skipped.update({name: why for name in gens if name != "shuffle"})
    for name in skipped:
        gens[name].manual_seed(gens[name].initial_seed())
    if skipped:
        log.warning(
            "RNG re-seeded from pretrain.seed for %s: %s",
            ", ".join(skipped),
            "; ".join(dict.fromkeys(skipped.values())),
        )
