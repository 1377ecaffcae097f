"""Real photographs for the quality suite: "which photo is this patch from?", as labelled patch sets.

Sources: the five natural photographs that ship inside installed packages
(nothing is downloaded):

- ``china``, ``flower``: scikit-learn's ``load_sample_images`` (427×640 colour
  JPEGs: the Summer Palace in Beijing, a dahlia);
- ``aero``, ``ascent``, ``camera``: PyWavelets' ``pywt.data`` (512×512 grey
  photographs: an aerial view, people on a stairway, the cameraman).

A patch set cuts ``window``-pixel squares from each photo, shrinks them to 32×32
by averaging (``window // 32`` pixels a side), and labels each with its photo.
Two sets are defined:

- ``scenes``: 64-pixel windows (a coarse view: objects and layout), luminance
  only (ITU-R 601), so colour cannot name the photo;
- ``closeups``: 32-pixel windows at the photos' own resolution (texture and
  edges), in the photo's own colours (the grey photos on three equal planes).

**Disjoint splits.** Each photo is cut into a grid of ``tile``-pixel squares
(what does not fill a whole tile at the right and bottom edges is unused); a
seeded permutation gives 20% of a photo's tiles to test, 10% to val and the rest
to train. Every window lies inside one tile (``window`` ≤ ``tile``), so a test
patch shares no pixel with any train or val patch: splits touch at most along
tile borders. Windows are taken on a 4-pixel lattice inside each tile.

**Informative windows only.** A window whose 32×32 luminance has a standard
deviation under 4 grey levels (clear sky, an out-of-focus background) is never
drawn: its only cue would be its mean brightness.

**Sizes and order.** Per photo 240 train, 60 val and 100 test windows, drawn
without replacement from that split's lattice, so the classes are exactly
balanced: 1,200 / 300 / 500 images per set. Each split is then shuffled. All
of it follows from one seed.

    python benchmarks/photos.py scenes OUT.tar.gz [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOURCES = ("china", "flower", "aero", "ascent", "camera")
SPLITS = ("train", "val", "test")
SIZE = 32  # side of a stored patch
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
TILE_SHARE = {"test": 0.2, "val": 0.1}  # of each photo's tiles; train has the rest
MIN_STD = 4.0  # grey levels (of 255): flatter windows are never drawn
LATTICE = 4  # pixels between candidate window corners


@dataclass(frozen=True)
class PatchSet:
    """One labelled patch set cut from :data:`SOURCES`.

    Attributes:
        name: the set's name in the suite.
        window: side of a window in source pixels; a multiple of 32, at most ``tile``.
        tile: side of the squares that are dealt to the splits.
        grey: store luminance on three equal planes instead of the photo's colours.
        per_photo: windows per photo in (train, val, test).
    """

    name: str
    window: int
    tile: int
    grey: bool
    per_photo: tuple[int, int, int] = (240, 60, 100)

    def __post_init__(self) -> None:
        if self.window % SIZE or not SIZE <= self.window <= self.tile:
            raise ValueError(f"{self.name}: window {self.window} must be a multiple of {SIZE} and at most tile")


PATCH_SETS = {
    "scenes": PatchSet("scenes", window=64, tile=96, grey=True),
    "closeups": PatchSet("closeups", window=32, tile=64, grey=False),
}


def load_sources() -> dict[str, np.ndarray]:
    """The five photographs as uint8 ``(H, W, 3)`` arrays (grey ones on three equal planes)."""
    import pywt.data  # bundled with PyWavelets: no download
    from sklearn.datasets import load_sample_images  # bundled with scikit-learn: no download

    images = dict(zip(("china", "flower"), load_sample_images().images))
    for name in ("aero", "ascent", "camera"):
        grey = np.asarray(getattr(pywt.data, name)(), dtype=np.uint8)  # (512, 512)
        images[name] = np.repeat(grey[:, :, None], 3, axis=2)
    return {name: images[name] for name in SOURCES}


def deal_tiles(height: int, width: int, tile: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Deal the whole ``tile``-pixel squares of an image to the splits.

    Returns:
        ``{split: int (T, 2)}``: the (top, left) corners of each split's tiles.
    """
    corners = np.array([(y, x) for y in range(0, height - tile + 1, tile) for x in range(0, width - tile + 1, tile)])
    order = rng.permutation(len(corners))
    n_test = max(1, round(TILE_SHARE["test"] * len(corners)))
    n_val = max(1, round(TILE_SHARE["val"] * len(corners)))
    if len(corners) - n_test - n_val < 1:
        raise ValueError(f"a {height}×{width} image has {len(corners)} tiles of {tile}: too few for three splits")
    return {
        "test": corners[order[:n_test]],
        "val": corners[order[n_test : n_test + n_val]],
        "train": corners[order[n_test + n_val :]],
    }


def render(image: np.ndarray, top: int, left: int, window: int, grey: bool) -> np.ndarray:
    """The window at (top, left) as a uint8 ``(3, 32, 32)`` patch: box-averaged, grey if asked."""
    f = window // SIZE
    crop = image[top : top + window, left : left + window].astype(np.float32)  # (window, window, 3)
    small = crop.reshape(SIZE, f, SIZE, f, 3).mean(axis=(1, 3))  # (32, 32, 3)
    if grey:
        # an elementwise sum, not `small @ LUMA`: a matrix product goes through BLAS, whose kernel
        # (chosen per CPU: FMA or not, the order of the sum) moves some values across a .5 and so
        # the set's bytes with the machine; this is IEEE float32, the same everywhere
        luma = small[:, :, 0] * LUMA[0] + small[:, :, 1] * LUMA[1] + small[:, :, 2] * LUMA[2]
        small = np.repeat(luma[:, :, None], 3, axis=2)
    return small.round().clip(0, 255).astype(np.uint8).transpose(2, 0, 1)


def candidates(image: np.ndarray, tiles: np.ndarray, spec: PatchSet) -> list[tuple[int, int]]:
    """Corners of the informative windows on the lattice inside ``tiles`` (in tile order, then row-major)."""
    out = []
    for ty, tx in tiles:
        for dy in range(0, spec.tile - spec.window + 1, LATTICE):
            for dx in range(0, spec.tile - spec.window + 1, LATTICE):
                patch = render(image, ty + dy, tx + dx, spec.window, grey=True)
                if patch[0].std() >= MIN_STD:
                    out.append((int(ty + dy), int(tx + dx)))
    return out


def patch_splits(spec: PatchSet, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Build the set's three splits.

    Args:
        spec: which set (:data:`PATCH_SETS`).
        seed: the one seed of the tile deal, the windows drawn and the order.

    Returns:
        ``{split: (images, labels, boxes)}``: uint8 ``(N, 3, 32, 32)``, int64 ``(N,)`` (index in
        :data:`SOURCES`), and int64 ``(N, 4)`` boxes ``(photo, top, left, side)`` in source pixels.

    Raises:
        ValueError: a split of a photo has fewer informative windows than it needs.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {s: [] for s in SPLITS}
    for label, (name, image) in enumerate(load_sources().items()):
        tiles = deal_tiles(image.shape[0], image.shape[1], spec.tile, rng)
        for split, n in zip(SPLITS, spec.per_photo):
            pool = candidates(image, tiles[split], spec)
            if len(pool) < n:
                raise ValueError(f"{spec.name}: {name} has {len(pool)} informative {split} windows, needs {n}")
            for i in rng.choice(len(pool), size=n, replace=False):
                top, left = pool[i]
                parts[split].append((render(image, top, left, spec.window, spec.grey), label, (label, top, left)))
    out = {}
    for split, items in parts.items():
        order = rng.permutation(len(items))
        images = np.stack([items[i][0] for i in order])
        labels = np.array([items[i][1] for i in order], dtype=np.int64)
        boxes = np.array([(*items[i][2], spec.window) for i in order], dtype=np.int64)
        out[split] = (images, labels, boxes)
    return out


def main(argv: list[str] | None = None) -> int:
    import suite_data

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("set", choices=sorted(PATCH_SETS), help="which patch set")
    parser.add_argument("output", type=Path, help="the .tar.gz to write (CIFAR-10 python layout)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiles, windows and order (default 0)")
    args = parser.parse_args(argv)
    dataset = suite_data.DATASETS[args.set]
    md5 = suite_data.write_tarball(args.output, dataset.splits(args.seed), dataset.class_names, args.set)
    print(f"{args.output}  md5 {md5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
