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
