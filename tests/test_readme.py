"""README.md is self-contained and says what the code does: no path outside the repository,
every module named in its Layout, every flag it mentions a real one."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cuda_rnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def test_readme_points_at_nothing_outside_the_repository() -> None:
    assert "../" not in README
    files = r"`((?:cuda_rnn|kernels_cu|tests|profiles|examples)/[^`\s*<]*(?:\.\w+|/))`"
    for path in re.findall(files, README):
        assert (ROOT / path).exists(), path


def test_layout_names_every_module() -> None:
    layout = _section("Layout")
    package = ROOT / "cuda_rnn"
    names = [p.name for p in package.glob("*.py") if p.name != "__init__.py"]
    names += [f"{p.name}/" for p in package.iterdir()
              if p.is_dir() and (p / "__init__.py").exists()]
    missing = [n for n in names if n not in layout]
    assert not missing, f"README's Layout does not name {missing}"


def test_every_flag_the_readme_mentions_exists(capsys: pytest.CaptureFixture) -> None:
    options: set[str] = set()
    for command in ("train", "sample", "vanish", "gradcheck"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        options.update(re.findall(r"--[a-z][a-z0-9-]*", capsys.readouterr().out))
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", _section("Train (the main job)")))
    assert mentioned and not mentioned - options, sorted(mentioned - options)
