"""Mistyped commands end in the command's usage line and one ``error:`` line, exit 2, no traceback.

Run through the real entry points: :func:`emogene_cli.cli.main` in this process, and the
``emogene`` console script in a subprocess (what a user's shell runs). Every command is tried
with each kind of usage error it can have.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emogene_cli.cli import main

# (command, arguments, the parameter or command the message must name)
MISSING = [
    ("preprocess", [], "video"),
    ("fit-identity", [], "name"),
    ("train-ldm", [], "data_dir"),
    ("train-a2m", [], "video_or_dir"),
    ("speak", [], "audio"),
    ("evaluate", [], "name"),
]
UNKNOWN_OPTION = [(cmd, [*args, "--bogus"], "--bogus") for cmd, args in [
    ("preprocess", ["v.mp4"]), ("fit-identity", ["may"]), ("train-ldm", ["mead"]),
    ("train-a2m", ["talking"]), ("speak", ["a.wav"]), ("evaluate", ["may"]), ("list", []),
]]
WRONG_TYPE = [
    ("preprocess", ["v.mp4", "--size", "big"], "--size"),
    ("fit-identity", ["may", "--seed", "abc"], "--seed"),
    ("train-ldm", ["mead", "--epochs", "many"], "--epochs"),
    ("train-a2m", ["talking", "--folds", "x"], "--folds"),
    ("speak", ["a.wav", "--intensity", "strong"], "--intensity"),
    ("evaluate", ["may", "--seconds-per-emotion", "long"], "--seconds-per-emotion"),
]
OUT_OF_RANGE = [
    ("preprocess", ["v.mp4", "--size", "8"], "--size"),
    ("train-ldm", ["mead", "--epochs", "0"], "--epochs"),
    ("train-a2m", ["talking", "--augment", "-1"], "--augment"),
    ("speak", ["a.wav", "--emotion", "happy", "--intensity", "9"], "--intensity"),
    ("evaluate", ["may", "--seconds-per-emotion", "0"], "--seconds-per-emotion"),
]
NOT_A_CHOICE = [
    ("preprocess", ["v.mp4", "--device", "tpu"], "--device"),
    ("preprocess", ["v.mp4", "--audio-features", "mfcc"], "--audio-features"),
    ("fit-identity", ["may", "--preset", "huge"], "--preset"),
    ("train-ldm", ["mead", "--device", "tpu"], "--device"),
    ("train-a2m", ["talking", "--preset", "huge"], "--preset"),
    ("speak", ["a.wav", "--device", "tpu"], "--device"),
    ("evaluate", ["may", "--device", "tpu"], "--device"),
]
EXTRA_ARGUMENT = [("list", ["extra"], "extra"), ("fit-identity", ["may", "june"], "june")]
CASES = MISSING + UNKNOWN_OPTION + WRONG_TYPE + OUT_OF_RANGE + NOT_A_CHOICE + EXTRA_ARGUMENT


def _check(command: str, err: str, code: int, names: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert lines[0].startswith(f"Usage: emogene {command}".rstrip()), err
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert names.lower() in errors[0].lower(), err


@pytest.mark.parametrize(("command", "args", "names"), CASES)
def test_usage_error_through_main(command, args, names, capsys):
    code = main([command, *args])
    _check(command, capsys.readouterr().err, code, names)


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("emogene")
    found = str(script) if script.exists() else shutil.which("emogene")
    if found is None:
        pytest.skip("the emogene console script is not installed in this environment")
    return [found]


@pytest.mark.parametrize(("command", "args", "names"), CASES)
def test_usage_error_through_the_console_script(command, args, names, tmp_path):
    done = subprocess.run([*_console_script(), command, *args], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "EMOGENE_HOME": str(tmp_path / "store")})
    _check(command, done.stderr, done.returncode, names)
    assert not (tmp_path / "store").exists(), "a usage error wrote to the store"


def test_unknown_command_names_it(capsys):
    code = main(["frobnicate"])
    _check("", capsys.readouterr().err, code, "frobnicate")


def test_unknown_global_option(capsys):
    code = main(["--colour", "list"])
    _check("", capsys.readouterr().err, code, "--colour")


def test_bare_command_prints_help():
    done = subprocess.run(_console_script(), capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stdout + done.stderr
    assert "preprocess" in done.stdout + done.stderr


def test_help_prose_is_not_broken_where_the_docstring_was(monkeypatch, capsys):
    """Each paragraph of a command's description flows as one; lists and examples keep their lines."""
    from emogene_cli.cli import reflow_help

    assert reflow_help("First line.\n\n    One paragraph\n    wrapped in the source.\n\n    - a\n    - b\n") == (
        "First line.\n\nOne paragraph wrapped in the source.\n\n- a\n- b"
    )
    assert reflow_help("x\n\nA -> B\n-> C\n--flag is joined too.\n\n\b\nkept\nas written") == (
        "x\n\nA -> B -> C --flag is joined too.\n\n\b\nkept\nas written"
    )
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["speak", "--help"]) == 0
    out = capsys.readouterr().out
    assert "landmark deformation (emotion, a blend or a track over time) -> LLE projection" in out


def test_the_console_entry_exits_with_mains_code_and_spares_the_last_collection(monkeypatch):
    """`run` exits with main's code after freezing the heap (the interpreter's last collection cost ~1 s after speak)."""
    import gc

    from emogene_cli import cli

    monkeypatch.setattr(cli, "main", lambda: 3)
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as stop:
            cli.run()
        assert stop.value.code == 3 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
