"""How a ParallelJobHandler worker finds a job's function: the references the handler
sends (``function_ref``: by module and name, or by value; ``shipped_ref``: the identity
alone for one that worker was sent before). ``hither.local.worker.load_function`` reads them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Tuple

from hither.code_identity import is_by_value

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import JobFunction


def function_ref(fn: "JobFunction", identity: str) -> Tuple[Any, ...]:
    """How a worker finds ``fn`` as it is now (``identity``, its code identity): by module
    and name, or by value for a ``__main__`` script's, a notebook's or a nested function
    (which a worker cannot import), pickled again whenever its identity changes. A worker
    gets it once per identity; later jobs name the identity (``shipped_ref``)."""
    cached = getattr(fn, "_worker_ref", None)
    if cached is not None and cached[0] == identity:
        ref: Tuple[Any, ...] = cached[1]
        return ref
    if is_by_value(fn):
        import cloudpickle

        ref = ("val", cloudpickle.dumps(fn.raw), fn.source_file or "", identity)
    else:
        ref = ("ref", fn.module, fn.qualname, fn.source_file or "", identity)
    fn._worker_ref = (identity, ref)  # type: ignore[attr-defined]
    return ref


def shipped_ref(ref: Tuple[Any, ...], w: Any) -> Tuple[Any, ...]:
    """The reference to send worker ``w`` (a ``parallel._Worker``) for ``ref``: the whole
    reference the first time, then only its code identity (the worker keeps what it got by
    identity, ``hither.local.worker._shipped``): a by-value function's pickle travels once
    per worker. Called under the handler's lock, in the order the messages are sent."""
    identity = ref[-1]
    if identity in w.shipped:
        return ("id", identity)
    w.shipped.add(identity)
    return ref
