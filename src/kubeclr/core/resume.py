"""A training run's state in a checkpoint: what is saved, and how a run is resumed from it.

The state is the model, optimiser, scheduler and grad-scaler state dicts, the
epoch and step, every rank's RNG streams, the config and the history so far
(:mod:`kubeclr.core.checkpoint` stores it all-or-nothing). With the same world
size and device type a resumed run draws exactly the random numbers the saved
one would have drawn: on the CPU it continues bitwise where that one stopped;
on CUDA it is RNG-exact but not bitwise, since cuDNN's choice of algorithm,
atomic-add reductions and inductor's kernels are not deterministic (no
``torch.use_deterministic_algorithms`` is set).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from kubeclr.config import Config, PretrainConfig
from kubeclr.core import checkpoint, distributed
from kubeclr.core.checkpoint import CheckpointWriter, Store
from kubeclr.errors import UserError

log = logging.getLogger(__name__)


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
    rng = distributed.all_gather_object(checkpoint.capture_rng(gens))  # [rank0, rank1, …]
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
        skipped = checkpoint.restore_rng(rng[rank], gens)
    else:
        skipped = checkpoint.restore_rng(rng[0], {"shuffle": gens["shuffle"]})
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
