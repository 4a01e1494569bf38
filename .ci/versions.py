"""CI helper. ``versions.py NAME ...``: the installed release of each package, as ``name==version``
pins on one line. ``versions.py --lowest NAME ...``: the lowest release pyproject.toml allows for
each (its ``>=`` bound), as pins with the dependency's extras, e.g. ``ray[tune]==2.40``."""
from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path


def installed(names: list[str]) -> list[str]:
    return [f"{n}=={importlib.metadata.version(n)}" for n in names]


def lowest(names: list[str]) -> list[str]:
    deps = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = []
    for name in names:
        match = next((m for d in deps if (m := re.fullmatch(rf"({re.escape(name)}(\[[\w,]+\])?)\s*>=\s*([\w.]+).*", d))), None)
        if match is None:
            sys.exit(f"pyproject.toml: no `{name}>=...` bound in project.dependencies")
        pins.append(f"{match.group(1)}=={match.group(3)}")
    return pins


if __name__ == "__main__":
    args = sys.argv[1:]
    print(" ".join(lowest(args[1:]) if args[:1] == ["--lowest"] else installed(args)))
