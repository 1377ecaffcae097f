"""The image folder layout: which file is in which split, with which label.

A labelled folder::

    train/<class>/<image>       labelled, for pretraining and the linear probe's training set
    test/<class>/<image>        labelled, for the final accuracies
    val/<class>/<image>         optional; without it val is a stratified data.val_fraction of train
    unlabeled/<image>           optional; pretraining only (its labels are never needed)

Class names are the sorted folder names of ``train/`` (label = index). Images
may sit in sub-folders of a class folder.

A folder without labels (no ``train/``, ``val/`` or ``test/``) is one of::

    unlabeled/<image>           only unlabelled images (other entries are ignored, with a warning)
    <image>, <any>/<image>      a flat folder: every file under it, in any sub-folders

Its images all count as unlabelled (``class_names == ()``, label -1); the data
step holds a seeded slice of them out for label-free evaluation. A folder with
``test/`` or ``val/`` but no ``train/`` is refused, as is an empty one.

In every layout a single wrapping folder (an archive of ``mydata/train/…`` or
``mydata/unlabeled/…``) is looked through. Hidden files (``.DS_Store``, ``._x``)
are ignored; any other file must be an image. Symbolic links are followed only
when they stay inside the dataset's folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from kubeclr.errors import DataError

log = logging.getLogger(__name__)

LABELLED = ("train", "val", "test")
UNLABELED = "unlabeled"
LAYOUT_HINT = (
    "expected train/<class>/<image> and test/<class>/<image> (optional val/<class>/ and unlabeled/), "
    "or, without labels, unlabeled/<image> alone or images directly in the folder"
)


@dataclass(frozen=True)
class FolderLayout:
    """An image folder, scanned.

    Attributes:
        root: the folder holding ``train/`` and ``test/`` (or ``unlabeled/``, or a flat folder's images).
        class_names: sorted class folder names of ``train/``; label = index. ``()`` for a folder
            without labels.
        files: ``{"train" | "val" | "test" | "unlabeled": [(relative path, label), …]}``, sorted by
            path; label -1 for unlabelled images; ``val`` is absent without a ``val/`` folder. A folder
            without labels has only ``unlabeled`` (a flat folder's files all count as unlabelled).
    """

    root: Path
    class_names: tuple[str, ...]
    files: dict[str, list[tuple[str, int]]]

    def count(self) -> int:
        return sum(len(v) for v in self.files.values())


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _no_linked_folder(path: Path, root: Path, origin: str) -> None:
    if path.is_symlink():
        rel = path.relative_to(root).as_posix() if path != root else path.name
        raise DataError(f"{origin}: {rel} is a symbolic link to a folder; refusing it (copy the images in instead)")


def _files_under(folder: Path, root: Path, origin: str) -> list[str]:
    """Every non-hidden file under ``folder`` (recursively), as paths relative to ``root``.

    A linked folder anywhere is refused (it could lead out of the dataset, or round in a
    cycle); a linked file is followed only when its target is inside the dataset.
    """
    found = []
    real_root = root.resolve()
    if folder != root:  # the dataset's own folder may be a link (as for a labelled folder)
        _no_linked_folder(folder, root, origin)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for d in dirnames:
            _no_linked_folder(Path(dirpath) / d, root, origin)
        for name in filenames:
            if _hidden(name):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                raise DataError(f"{origin}: {rel} is a symbolic link to outside the dataset; refusing it")
            if not path.is_file():
                raise DataError(f"{origin}: {rel} is not a regular file")
            found.append(rel)
    return sorted(found)


def _entries(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if not _hidden(p.name)] if root.is_dir() else []


def _dataset_root(root: Path, origin: str) -> Path:
    """The folder holding the split folders: ``root``, or its single sub-folder that holds them.

    A folder with no split folder (``train``, ``val``, ``test``, ``unlabeled``) is returned as is: a flat folder.
    """
    named = (*LABELLED, UNLABELED)
    if any((root / s).is_dir() for s in named):
        return root
    entries = _entries(root)
    if len(entries) == 1 and any((entries[0] / s).is_dir() for s in named):
        _no_linked_folder(entries[0], root, origin)
        return entries[0]
    return root


def _unlabelled(root: Path, path: Path, origin: str) -> FolderLayout:
    """A folder without labels: ``unlabeled/`` alone, or a flat folder of images."""
    if (root / UNLABELED).is_dir():
        files = _files_under(root / UNLABELED, root, origin)
        ignored = sorted(p.name for p in _entries(root) if p.name != UNLABELED)
        if ignored:
            log.warning("%s: ignoring %s (not part of the layout)", origin, ", ".join(ignored[:5]))
        if not files:
            raise DataError(f"{origin}: unlabeled/ holds no images; {LAYOUT_HINT}")
    else:
        files = _files_under(root, root, origin)
        if not files:
            entries = _entries(path)
            shown = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in entries)[:8]) or "nothing"
            raise DataError(f"{origin}: not an image folder (no images; found {shown}); {LAYOUT_HINT}")
    return FolderLayout(root=root, class_names=(), files={UNLABELED: [(f, -1) for f in files]})


def _labelled(root: Path, split: str, origin: str) -> dict[str, list[str]]:
    """``{class: [relative paths]}`` of one labelled split folder."""
    classes: dict[str, list[str]] = {}
    _no_linked_folder(root / split, root, origin)
    for entry in sorted(root.joinpath(split).iterdir()):
        if _hidden(entry.name):
            continue
        if not entry.is_dir():
            raise DataError(f"{origin}: {split}/{entry.name} sits directly in {split}/; images go in {split}/<class>/")
        files = _files_under(entry, root, origin)
        if not files:
            raise DataError(f"{origin}: {split}/{entry.name}/ is an empty class folder (no images)")
        classes[entry.name] = files
    return classes


def scan_folder(path: Path, *, origin: str) -> FolderLayout:
    """Scan an image folder and check its layout.

    Args:
        path: the folder (or a folder with one sub-folder that is the dataset).
        origin: the source's URI, for errors.

    Returns:
        The layout; ``class_names == ()`` for a folder without labels (``unlabeled/`` alone, or flat).

    Raises:
        DataError: ``train/`` without ``test/`` or ``test/``/``val/`` without ``train/``, a file
            directly in a split folder, an empty class folder, fewer than two classes, a
            ``val``/``test`` class that ``train`` lacks, a link out of the folder, no images at all.
    """
    root = _dataset_root(path, origin)
    if not (root / "train").is_dir():
        orphans = [f"{s}/" for s in LABELLED if (root / s).is_dir()]
        if orphans:
            raise DataError(
                f"{origin}: {' and '.join(orphans)} but no train/ folder (labelled images need train/<class>/; "
                f"a folder without labels has no train/, val/ or test/); {LAYOUT_HINT}"
            )
        return _unlabelled(root, path, origin)
    if not (root / "test").is_dir():
        raise DataError(f"{origin}: no test/ folder; {LAYOUT_HINT}")
    present = [s for s in LABELLED if (root / s).is_dir()]
    by_split = {s: _labelled(root, s, origin) for s in present}
    class_names = tuple(sorted(by_split["train"]))
    if len(class_names) < 2:
        only = f" ({class_names[0]})" if class_names else ""
        raise DataError(f"{origin}: train/ has {len(class_names)} class folder(s){only}; at least two are needed")
    label = {name: i for i, name in enumerate(class_names)}
    files: dict[str, list[tuple[str, int]]] = {}
    for split, classes in by_split.items():
        unknown = sorted(set(classes) - set(label))
        if unknown:
            raise DataError(f"{origin}: {split}/{unknown[0]}/ is a class that train/ does not have")
        if not classes:
            raise DataError(f"{origin}: {split}/ has no class folders; {LAYOUT_HINT}")
        missing = sorted(set(label) - set(classes))
        if missing and split != "train":
            log.warning("%s: %s/ has no images of class(es) %s", origin, split, ", ".join(missing[:5]))
        files[split] = sorted((f, label[c]) for c, fs in classes.items() for f in fs)
    if (root / UNLABELED).is_dir():
        files[UNLABELED] = [(f, -1) for f in _files_under(root / UNLABELED, root, origin)]
    ignored = sorted(p.name for p in root.iterdir() if not _hidden(p.name) and p.name not in (*LABELLED, UNLABELED))
    if ignored:
        log.warning("%s: ignoring %s (not part of the layout)", origin, ", ".join(ignored[:5]))
    return FolderLayout(root=root, class_names=class_names, files=files)
