"""CPU and memory sizes of the pods, checked before they reach KFP's compiler or a job object.

Kubernetes writes them as resource quantities (``2``, ``1.5``, ``500m`` CPUs; ``8Gi``, ``512Mi``,
``8G`` bytes). The forms accepted here are those that Kubernetes and KFP's compiler both take:
KFP refuses fractions and exponents in memory (``1.5Gi``, ``1e9``), and Kubernetes refuses ``8K``
and ``8GB``. A value that passes compiles, and the API server admits it.
"""

from __future__ import annotations

import re

from kubeclr.errors import UserError

CPU = re.compile(r"\d+(\.\d+)?|\.\d+|\d+m")  # cores, or whole millicores
MEMORY = re.compile(r"\d+(Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?")  # bytes: binary or decimal suffix
# any Kubernetes quantity (sign, decimal, exponent or suffix): to say why a valid one is still refused
_ANY = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?")
CPU_EXAMPLES = "2, 1.5 or 500m"
MEMORY_EXAMPLES = "8Gi, 512Mi or 8G"


def check_cpu(what: str, value: str) -> str:
    """``value`` if it is a positive CPU quantity.

    Raises:
        UserError: one line naming ``what`` (e.g. ``--step-cpu``) and the accepted forms.
    """
    if not CPU.fullmatch(value):
        raise UserError(f"{what} {_shown(value)} is not a Kubernetes CPU quantity (use e.g. {CPU_EXAMPLES})")
    if not re.search(r"[1-9]", value):
        raise UserError(f"{what} {value}: must be more than 0 (e.g. {CPU_EXAMPLES})")
    return value


def check_memory(what: str, value: str) -> str:
    """``value`` if it is a positive memory quantity in a form KFP compiles.

    Raises:
        UserError: one line naming ``what`` (e.g. ``--step-memory``) and the accepted forms.
    """
    if not MEMORY.fullmatch(value):
        if _ANY.fullmatch(value):
            raise UserError(
                f"{what} {value}: KFP takes memory as a whole number with an optional unit (use e.g. "
                f"{MEMORY_EXAMPLES}; 1536Mi rather than 1.5Gi)"
            )
        raise UserError(f"{what} {_shown(value)} is not a Kubernetes memory quantity (use e.g. {MEMORY_EXAMPLES})")
    if not re.search(r"[1-9]", value.rstrip("KMGTPEi")):
        raise UserError(f"{what} {value}: must be more than 0 (e.g. {MEMORY_EXAMPLES})")
    return value


def _shown(value: str) -> str:
    """``value`` as typed, quoted when it is empty or holds spaces."""
    return value if re.fullmatch(r"\S+", value) else repr(value)
