"""Every command starts and fails the same way: one helper, not one copy per CLI."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import lora_tasks
from lora_tasks.cli import entry_point
from lora_tasks.errors import INPUT_ERROR_EXIT, DatasetError


def test_an_input_error_is_a_message_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    @entry_point
    def main(argv: list[str] | None = None) -> int:
        raise DatasetError(f"dataset {argv} is empty. Fix: upload images there first")

    assert main(["x"]) == INPUT_ERROR_EXIT
    assert capsys.readouterr().err == "error: dataset ['x'] is empty. Fix: upload images there first\n"


def test_a_bug_keeps_its_traceback() -> None:
    @entry_point
    def main(argv: list[str] | None = None) -> int:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        main([])


def commands() -> list[str]:
    """Modules that run as ``python -m``: a ``__main__`` guard, or a package's ``__main__``."""
    found = []
    for module in pkgutil.walk_packages(lora_tasks.__path__, "lora_tasks."):
        spec = importlib.util.find_spec(module.name)
        source = open(spec.origin).read() if spec and spec.origin else ""  # noqa: PTH123, SIM115
        if module.name.endswith(".__main__") or 'if __name__ == "__main__":' in source:
            found.append(module.name)
    return found


@pytest.mark.parametrize("name", commands())
def test_every_command_uses_the_helper(name: str) -> None:
    main = importlib.import_module(name).main
    assert getattr(main, "__wrapped__", None) is not None, f"{name}.main is not wrapped by lora_tasks.cli.entry_point"
    assert main.__code__ is entry_point(lambda argv: 0).__code__


@pytest.mark.parametrize("name", commands())
def test_every_command_runs_with_python_m(name: str) -> None:
    command = name.removesuffix(".__main__")
    result = subprocess.run([sys.executable, "-m", command, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: python -m {command}"), result.stdout[:200]
