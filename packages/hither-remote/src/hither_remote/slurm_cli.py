"""The ``--slurm-*`` options of ``hither-remote serve``, made from hither-slurm's options model.

Every field of ``hither_slurm.options.SlurmOptions`` (the options of ``hi.SlurmJobHandler``)
is an option ``--slurm-<field>`` of ``serve``, read also from ``$HITHER_REMOTE_SLURM_<FIELD>``,
with the field's type, range, default and description: a new SlurmJobHandler option appears
here without editing hither-remote. Fields that had a shorter flag before keep it as their
first name (``--slurm-workers-per-batch`` for ``num_workers_per_batch``, with its env var),
``use_slurm`` is ``--slurm-use-slurm/--slurm-local-pilots``, and ``max_simultaneous_batches``
defaults to 1 here (a compute resource sizes its capacity from it).

hither-slurm is imported only when ``serve`` parses or shows help (``SlurmCommand``), so
hither-remote runs without it; a ``--slurm-*`` option then says to install it::

    opts = slurm_options()                       # [] without hither-slurm
    kwargs = handler_kwargs(ctx.params)          # SlurmJobHandler(**kwargs)
"""
from __future__ import annotations

import os
import typing
from typing import Any, Dict, List, Optional, Tuple

import click
from click.core import ParameterSource

#: fields whose flag (and env var) had another name before the options came from the model:
#: field -> the older name, which stays the option's first name and parameter name
LEGACY_NAMES: Dict[str, str] = {
    "num_workers_per_batch": "workers_per_batch",
    "num_cores_per_job": "cores_per_job",
    "time_limit_per_batch": "time_limit",
    "max_simultaneous_batches": "max_batches",
}
#: defaults that differ on the command line from the model's (the model's own in brackets):
#: a resource runs one batch at once unless told otherwise [no limit]; the working folder is
#: asked for only with ``--handler slurm`` [required]
CLI_DEFAULTS: Dict[str, Any] = {"max_simultaneous_batches": 1, "working_dir": None}
#: ``--slurm-local-pilots`` was a flag of its own; its env var keeps meaning use_slurm=False
LOCAL_PILOTS_ENV = "HITHER_REMOTE_SLURM_LOCAL_PILOTS"
_PREFIX = "slurm_"
_ENV_PREFIX = "HITHER_REMOTE_SLURM_"
_MISSING = "pip install hither-slurm"


def _model() -> Any:
    from hither_slurm.options import SlurmOptions

    return SlurmOptions


def _param_name(field: str) -> str:
    return _PREFIX + LEGACY_NAMES.get(field, field)


def _flag(name: str) -> str:
    return "--slurm-" + name.replace("_", "-")


def _bare(annotation: Any) -> Tuple[Any, bool]:
    """(the type inside ``Optional[...]``, whether it was optional)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    union = typing.get_origin(annotation) is typing.Union or type(annotation).__name__ == "UnionType"
    if union and len(args) == 1:
        return args[0], True
    return annotation, False


def _bounds(info: Any) -> Dict[str, Any]:
    """The click range arguments of a field's ``ge``/``gt``/``le``/``lt`` constraints."""
    out: Dict[str, Any] = {}
    for m in info.metadata:
        for attr, key, open_key in (("ge", "min", None), ("gt", "min", "min_open"),
                                    ("le", "max", None), ("lt", "max", "max_open")):
            value = getattr(m, attr, None)
            if value is not None:
                out[key] = value
                if open_key:
                    out[open_key] = True
    return out


def _click_type(kind: Any, info: Any) -> Any:
    bounds = _bounds(info)
    if kind is int:
        return click.IntRange(**bounds) if bounds else int
    if kind is float:
        return click.FloatRange(**bounds) if bounds else float
    return str


def _default(field: str, info: Any) -> Any:
    if field in CLI_DEFAULTS:
        return CLI_DEFAULTS[field]
    if info.is_required():
        return None  # the handler says it is missing
    return info.get_default(call_default_factory=True)


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on", "y", "t")


def _use_slurm_callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """``use_slurm`` from the older ``$HITHER_REMOTE_SLURM_LOCAL_PILOTS`` (or a config file's
    ``slurm-local-pilots``) when neither ``--slurm-use-slurm/--slurm-local-pilots``,
    ``$HITHER_REMOTE_SLURM_USE_SLURM`` nor ``slurm-use-slurm`` says."""
    if ctx.get_parameter_source(param.name or "") is not ParameterSource.DEFAULT:
        return value
    env = os.environ.get(LOCAL_PILOTS_ENV)
    if env is not None:
        return not _truthy(env)
    legacy = (ctx.default_map or {}).get("slurm_local_pilots")
    return value if legacy is None else not bool(legacy)


def _option(field: str, info: Any) -> click.Option:
    names = [field] if field not in LEGACY_NAMES else [LEGACY_NAMES[field], field]
    env = [_ENV_PREFIX + n.upper() for n in names]
    help_text = "slurm: " + (info.description or field.replace("_", " "))
    kind, _ = _bare(info.annotation)
    common: Dict[str, Any] = dict(envvar=env, show_envvar=True, help=help_text)
    if kind is bool:
        off = "--slurm-local-pilots" if field == "use_slurm" else f"--slurm-no-{field.replace('_', '-')}"
        return click.Option([f"{_flag(field)}/{off}", _param_name(field)], default=_default(field, info),
                            show_default=True, callback=_use_slurm_callback if field == "use_slurm" else None,
                            **common)
    decls = [*(_flag(n) for n in names), _param_name(field)]
    if typing.get_origin(kind) in (list, List):
        return click.Option(decls, multiple=True, type=str, **common)
    default = _default(field, info)
    return click.Option(decls, type=_click_type(kind, info), default=default,
                        show_default=default is not None, **common)


def slurm_options() -> List[click.Option]:
    """One click option per field of hither-slurm's options model ([] without hither-slurm)."""
    try:
        model = _model()
    except ImportError:
        return []
    return [_option(field, info) for field, info in model.model_fields.items()]


def handler_kwargs(params: Dict[str, Any]) -> Dict[str, Any]:
    """``SlurmJobHandler`` keyword arguments from ``serve``'s parsed ``--slurm-*`` options."""
    out: Dict[str, Any] = {}
    for field, info in _model().model_fields.items():
        name = _param_name(field)
        if name not in params:
            continue
        value = params[name]
        kind, _ = _bare(info.annotation)
        out[field] = list(value) if typing.get_origin(kind) in (list, List) else value
    return out


class SlurmCommand(click.Command):
    """A command that adds the ``--slurm-*`` options when it parses or shows help, so that
    hither-slurm is imported only then, and only if installed."""

    _slurm: Optional[List[click.Option]] = None

    def get_params(self, ctx: click.Context) -> List[click.Parameter]:
        if self._slurm is None:
            self._slurm = slurm_options()
        params = super().get_params(ctx)
        n = len(params) - 1 if params and params[-1].name == "help" else len(params)
        return [*params[:n], *self._slurm, *params[n:]]  # before --help

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        params = self.get_params(ctx)
        if not any(p.name and p.name.startswith(_PREFIX) for p in params):
            given = [a.split("=", 1)[0] for a in args if a.startswith("--slurm-")]
            if given:
                raise click.UsageError(f"{given[0]} is an option of --handler slurm, which needs the "
                                       f"hither-slurm package on this machine: {_MISSING}", ctx=ctx)
        return super().parse_args(ctx, args)
