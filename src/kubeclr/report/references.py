"""Published CIFAR-10 results, to read beside a run's own numbers (from the sources named; not measured here).

The report shows the entries of the run's architecture when its data is real CIFAR-10 (not the
synthetic ``sample``, not another format), nearest in epochs first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Reference:
    source: str
    url: str
    arch: str
    epochs: int
    setup: str
    metric: str  # "linear" or "kNN"
    top1: float


CIFAR10 = (
    Reference(
        "SimCLR paper, App. B.9",
        "https://arxiv.org/abs/2002.05709",
        "resnet50",
        1000,
        "batch 1024, LARS",
        "linear",
        0.940,
    ),
    Reference(
        "AndrewAtanov/simclr-pytorch",
        "https://github.com/AndrewAtanov/simclr-pytorch",
        "resnet50",
        1000,
        "batch 1024, LARS lr 4.0, τ 0.5, sync BN",
        "linear",
        0.9344,
    ),
    Reference(
        "dkobak/simclr-cifar10",
        "https://github.com/dkobak/simclr-cifar10",
        "resnet18",
        100,
        "batch 512, SGD 0.03·B/256",
        "linear",
        0.856,
    ),
    Reference(
        "dkobak/simclr-cifar10",
        "https://github.com/dkobak/simclr-cifar10",
        "resnet18",
        1000,
        "batch 512, SGD 0.03·B/256",
        "linear",
        0.917,
    ),
    Reference(
        "dkobak/simclr-cifar10",
        "https://github.com/dkobak/simclr-cifar10",
        "resnet50",
        1000,
        "batch 512, SGD 0.03·B/256",
        "linear",
        0.934,
    ),
    Reference(
        "solo-learn", "https://github.com/vturrisi/solo-learn", "resnet18", 1000, "LARS, τ 0.2", "linear", 0.9074
    ),
    Reference("lightly benchmarks", "https://docs.lightly.ai", "resnet18", 200, "batch 512", "kNN", 0.848),
    Reference("lightly benchmarks", "https://docs.lightly.ai", "resnet18", 800, "batch 512", "kNN", 0.879),
    Reference(
        "seed article",
        "https://github.com/kubeclr/kubeclr#presets",
        "resnet50",
        100,
        "ImageNet-initialised, batch 128, LARS 0.2",
        "linear",
        0.85,
    ),
)


def references_for(metrics: Mapping[str, Any]) -> list[Reference]:
    """The published results comparable with this run (none unless the data is real CIFAR-10)."""
    ds, pre = metrics["dataset"], metrics["pretrain"]
    if ds.get("synthetic") or (ds.get("format") or "cifar10") != "cifar10":
        return []
    epochs = int(pre.get("epochs") or 0)
    same = [r for r in CIFAR10 if r.arch == pre.get("arch")]
    return sorted(same, key=lambda r: abs(r.epochs - epochs))
