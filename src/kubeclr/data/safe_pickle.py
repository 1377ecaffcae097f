"""A restricted unpickler for the CIFAR-10 batch files.

The CIFAR-10 python batches are pickles, and ``pickle.load`` on bytes from the
network runs whatever callable the bytes name. :class:`CifarUnpickler` resolves
globals from a fixed allowlist — numpy's array reconstruction and nothing
else — so a payload that names ``os.system`` (or any other callable) fails in
``find_class``, *before* anything is called. Plain containers and scalars
(dict, list, tuple, bytes, str, int, float, bool, None) need no globals at all.

See https://docs.python.org/3/library/pickle.html#restricting-globals.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any, Callable

import numpy as np

from kubeclr.errors import DataError


def _numpy_attr(module: str, name: str) -> Callable[..., Any] | None:
    """Look up a numpy internal under its numpy>=2 (``_core``) or numpy 1.x (``core``) module."""
    for mod in (f"numpy._core.{module}", f"numpy.core.{module}"):
        try:
            return getattr(__import__(mod, fromlist=[name]), name)
        except (ImportError, AttributeError):
            continue
    return None


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for ``bytes``, latin-1 only."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_attr("multiarray", "_reconstruct")
    scalar = _numpy_attr("multiarray", "scalar")
    frombuffer = _numpy_attr("numeric", "_frombuffer")  # protocol 5 arrays
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = frombuffer
    return {key: value for key, value in allowed.items() if value is not None}


_ALLOWED = _allowed_globals()


class CifarUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals a CIFAR batch needs.

    Keys and Python 2 strings come back as ``bytes`` (``encoding="bytes"``), as
    in the original CIFAR-10 loading recipe.
    """

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file, encoding="bytes")

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def safe_loads(data: bytes, *, origin: str) -> Any:
    """Unpickle ``data`` with :class:`CifarUnpickler`.

    Args:
        data: the pickle bytes (one CIFAR batch or ``batches.meta``).
        origin: what to name in an error, e.g. ``"cifar.tar.gz:cifar-10-batches-py/data_batch_1"``.

    Returns:
        The unpickled object (a dict for well-formed CIFAR files).

    Raises:
        DataError: the pickle names a disallowed global, or is corrupt.
    """
    try:
        return CifarUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{origin}: unsafe or corrupt pickle ({exc})") from None
    except (
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        LookupError,
        MemoryError,
        OverflowError,
        UnicodeDecodeError,
    ) as exc:
        raise DataError(f"{origin}: corrupt pickle ({type(exc).__name__}: {exc})") from None
