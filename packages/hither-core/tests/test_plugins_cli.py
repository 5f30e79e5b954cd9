"""hither.plugins.cli: the one duration syntax of the command lines, and install hints that
a shell (zsh included) runs as printed."""
from __future__ import annotations

import shlex

import pytest

from hither.errors import PluginNotInstalledError
from hither.plugins import registry
from hither.plugins.cli import DURATION_SYNTAX, parse_duration, pip_install

DAY = 86400.0


@pytest.mark.parametrize("text,seconds", [
    ("0s", 0), ("1.5s", 1.5), ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 7 * DAY),
    ("2w", 14 * DAY), ("1d12h", 1.5 * DAY), ("1h30m", 5400), ("0.5h", 1800), (" 7D ", 7 * DAY),
    ("1d 12h", 1.5 * DAY), ("2w1d1h1m1s", 15 * DAY + 3661)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", " ", "d", "7x", "7d garbage", "-1d", "-5", "soon", "1e3",
                                  "nan", "inf", "7d-1h", "1..5h", "h7"])
def test_parse_duration_rejects_with_the_syntax(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message and DURATION_SYNTAX in message and "\n" not in message


@pytest.mark.parametrize("text", ["90", "30", "0", "1.5", " 7 "])
def test_a_bare_number_is_refused_naming_the_units(text: str) -> None:
    # prune and clear delete by these: "30" meant 30 days to hither-store and would mean 30 s
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    n = text.strip()
    assert "no unit" in message and f"{n}s" in message and f"{n}d" in message and "\n" not in message


def test_pip_install_quotes_extras_for_the_shell() -> None:
    assert pip_install("hither-slurm") == "pip install hither-slurm"
    assert pip_install("hither-cache[mongo]") == "pip install 'hither-cache[mongo]'"
    assert shlex.split(pip_install("hither-cache[mongo]")) == ["pip", "install", "hither-cache[mongo]"]


def test_registry_install_hint_is_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.install_hint("caches", "mongo") == "install it with: pip install 'hither-cache[mongo]'"
    monkeypatch.setattr(registry, "_discover", lambda group: {})
    monkeypatch.setattr(registry, "_loaded", {})
    with pytest.raises(PluginNotInstalledError, match=r"pip install 'hither-cache\[mongo\]'"):
        registry.load("caches", "mongo")


def test_command_failure_ctrl_c_exits_130_with_a_note() -> None:
    from hither.plugins.cli import EXIT_INTERRUPTED, command_failure

    failure = command_failure(KeyboardInterrupt(), "stored content is never half-written")
    assert failure is not None and failure.exit_code == EXIT_INTERRUPTED == 130
    assert failure.message.startswith("interrupted (Ctrl-C)")
    assert failure.message.endswith("; stored content is never half-written")
    assert "\n" not in failure.message


def test_command_failure_of_an_unexpected_error_names_it_and_the_traceback_flag() -> None:
    from hither.plugins.cli import command_failure

    failure = command_failure(RuntimeError("nobody expected this"))
    assert failure is not None and failure.exit_code == 1
    assert failure.message.startswith("unexpected RuntimeError: nobody expected this; -v shows")
    assert command_failure(SystemExit(2)) is None  # not a failure to report


class _UsageError(Exception):
    """Stands for a CLI library's own exception (click's usage error)."""


class _Shown(Exception):
    """Stands for the CLI library's error a command line shows (click's ClickException)."""

    def __init__(self, failure: "object") -> None:
        super().__init__(getattr(failure, "message", failure))
        self.exit_code = getattr(failure, "exit_code", 1)


def _guarded(exc: BaseException, explain=None):  # noqa: ANN001, ANN202
    import logging

    from hither.plugins.cli import guard_command

    def invoke() -> None:
        raise exc

    return guard_command(invoke, passthrough=(_UsageError,), as_error=_Shown, explain=explain,
                         log=logging.getLogger("hither.test"), interrupted_note="nothing half-done")


def test_guard_command_returns_the_result_and_passes_the_libraries_own_errors() -> None:
    import logging

    from hither.plugins.cli import guard_command

    log = logging.getLogger("hither.test")
    assert guard_command(lambda: 7, passthrough=(_UsageError,), as_error=_Shown, log=log) == 7
    with pytest.raises(_UsageError):
        _guarded(_UsageError("bad option"))
    with pytest.raises(SystemExit):  # not a failure
        _guarded(SystemExit(0))


def test_guard_command_reports_ctrl_c_and_the_unexpected_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with pytest.raises(_Shown) as info:
        _guarded(KeyboardInterrupt())
    assert info.value.exit_code == 130 and str(info.value).endswith("; nothing half-done")
    assert info.value.__suppress_context__  # no chained traceback for the user
    with caplog.at_level(logging.DEBUG, logger="hither.test"), pytest.raises(_Shown) as info:
        _guarded(RuntimeError("nobody expected this"))
    assert info.value.exit_code == 1 and str(info.value).startswith("unexpected RuntimeError: nobody")
    assert "Traceback" in caplog.text  # -v shows it


def test_guard_command_lets_the_command_line_explain_what_it_knows() -> None:
    def explain(exc: Exception):  # noqa: ANN202
        return _Shown(f"cannot read the folder: {exc}") if isinstance(exc, OSError) else None

    with pytest.raises(_Shown, match="cannot read the folder: denied"):
        _guarded(PermissionError("denied"), explain)
    with pytest.raises(_Shown, match="unexpected ValueError"):
        _guarded(ValueError("x"), explain)
