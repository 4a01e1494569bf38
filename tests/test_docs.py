"""Docs that cannot rot silently: README.md and docs/*.md checked against the repository.

Per page: every relative link and image resolves (to a file, and to a heading when it has an
anchor); every ``run_study.py`` command a page shows parses with the real command-line parser (its
subcommand and every option exist; a ``run`` command's study file, ``--set`` items and ``--smoke``
validate like a real run); every study file a page names exists and validates; every ``yaml``
snippet validates as (part of) a study file; every repository path a page names exists. And the
reference of docs/studies.md lists every setting of a study file, with its default.

Fast and Ray-free: nothing runs a study, the parser and the spec validation only.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

from mmc_sweep.cli import build_parser
from mmc_sweep.errors import InputError
from mmc_sweep.study.definition.overrides import apply_sets, smoke
from mmc_sweep.study.definition.spec import ObjectiveSpec, ParamSpec, StudySpec, load_study, parse_study, read_study_file

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PAGE_IDS = [str(p.relative_to(ROOT)) for p in PAGES]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"

FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.I)
STUDY_FILE = re.compile(r"search_spaces/[\w./-]*?\.ya?ml\b")
# paths into the repository's own folders; a placeholder (<...>) or a glob (*) ends the match
REPO_PATH = re.compile(r"(?<![\w/.~:-])((?:benchmarks|examples|tests|mmc_sweep|search_spaces|docs)/[\w./-]*)")
SHELL_STOP = {"|", "||", "&", "&&", ";", ">", ">>", "<", "(", ")", "2>", "2>&1"}


@dataclasses.dataclass
class Page:
    path: Path
    text: str
    prose: str  # the text without fenced blocks (inline code kept)
    blocks: list[tuple[str, str, int]]  # (language, body, first line number)

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))


def read_page(path: Path) -> Page:
    text = path.read_text(encoding="utf-8")
    prose, blocks, fence, lang, body, start = [], [], None, "", [], 0
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence, lang, body, start = match.group(1), match.group(2).lower(), [], number + 1
            prose.append("")
        elif fence is not None and line.strip().startswith(fence):
            blocks.append((lang, "\n".join(body), start))
            fence = None
            prose.append("")
        elif fence is not None:
            body.append(line)
            prose.append("")
        else:
            prose.append(line)
    assert fence is None, f"{path.name}: a code block opened at line {start - 1} is never closed"
    return Page(path, text, "\n".join(prose), blocks)


def inline_code(page: Page) -> list[str]:
    return [m.group(2).strip() for m in INLINE_CODE.finditer(page.prose)]


# ------------------------------------------------------------------------------------------- links
def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, lower case, punctuation dropped, spaces -> '-'."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Page) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in page.prose.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    out |= {m.lower() for m in re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", page.prose)}
    return out


def link_targets(page: Page) -> list[str]:
    prose = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), page.prose)  # `[x](y)` in code is not a link
    return [m.group(1) for m in LINK.finditer(prose)] + [m.group(1) for m in HTML_SRC.finditer(prose)]


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_links_and_images_resolve(path: Path) -> None:
    page = read_page(path)
    broken = []
    for target in link_targets(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http(s), mailto: not checked here
            continue
        file_part, _, anchor = target.partition("#")
        if file_part.startswith("/"):
            broken.append(f"{target} (absolute: links must be relative to render on the repository host)")
            continue
        resolved = (page.path.parent / file_part).resolve() if file_part else page.path
        if not resolved.exists():
            broken.append(f"{target} (no such file: {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved})")
            continue
        if anchor and resolved.suffix == ".md" and anchor.lower() not in anchors(read_page(resolved)):
            broken.append(f"{target} (no heading with anchor #{anchor} in {resolved.relative_to(ROOT)})")
    assert not broken, f"{page.name}: broken links:\n  " + "\n  ".join(broken)


def test_pages_are_linked_from_the_readme() -> None:
    """The README's map of the docs names every page under docs/."""
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in link_targets(read_page(ROOT / "README.md"))}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"README.md: docs pages not linked from the README: {missing}"


def test_readme_stays_a_front_door() -> None:
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= 250, f"README.md has {lines} lines; the front door keeps to 250, details go to docs/"


# ---------------------------------------------------------------------------------------- commands
def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def commands(page: Page) -> list[tuple[str, list[str], bool]]:
    """(where, arguments after ``run_study.py``, complete) of every command a page shows: in code
    blocks (complete command lines) and in inline code (possibly a fragment, e.g. `run_study.py
    compact` without its folder)."""
    found = []
    for lang, body, start in page.blocks:
        if lang in ("python", "py", "yaml", "yml", "sql", "json"):
            continue
        logical, first = "", start
        for number, line in enumerate(body.splitlines(), start):
            if not logical:
                first = number
            if line.rstrip().endswith("\\"):
                logical += line.rstrip()[:-1] + " "
                continue
            logical += line
            if "run_study.py" in logical:
                found += [(f"line {first}", args, True) for args in _after_run_study(logical, page, first)]
            logical = ""
    for code in inline_code(page):
        if re.match(r"^(\S+ )*(python |\./)?run_study\.py( |$)", code) and re.search(r"run_study\.py\s+\S", code):
            found += [(f"`{code}`", args, False) for args in _after_run_study(code, page, "inline")]
    return found


def _after_run_study(line: str, page: Page, where) -> list[list[str]]:
    line = re.sub(r"<([\w./-]+)>", r"\1", line)  # placeholders such as <trial_id>
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as err:
        pytest.fail(f"{page.name} {where}: cannot split the command line ({err}): {line}")
    out = []
    for i, token in enumerate(tokens):
        if token.endswith("run_study.py"):
            args = []
            for t in tokens[i + 1:]:
                if t in SHELL_STOP:
                    break
                args.append(t)
            out.append(args)
    return out


def check_command(args: list[str], complete: bool) -> str | None:
    """Why ``run_study.py ARGS`` would not be accepted (None: it would)."""
    parser = build_parser()
    subs = _subcommands(parser)
    args = args or ["run"]  # `python run_study.py` alone runs the quickstart
    if args[0] not in subs:
        return f"unknown subcommand {args[0]!r} (valid: {', '.join(subs)})"
    known = _options(subs[args[0]])
    unknown = [a.split("=")[0] for a in args[1:] if a.startswith("-") and a.split("=")[0] not in known]
    if unknown:
        return f"`{args[0]}` has no option {', '.join(unknown)}"
    if "-h" in args or "--help" in args:
        return None
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parsed = parser.parse_args(args)
        except SystemExit:
            message = " ".join(err.getvalue().split())
            if not complete and "required" in message:  # an inline fragment without its folder
                return None
            return message or "rejected by the parser"
    if parsed.command == "run" and not re.fullmatch(r"[A-Z][A-Z_]*", parsed.file):  # FILE: a placeholder
        file = Path(parsed.file) if Path(parsed.file).is_absolute() else ROOT / parsed.file
        try:
            spec = apply_sets(read_study_file(file), parsed.set, parsed.file)
            if parsed.smoke:
                smoke(spec)
        except InputError as err:
            return f"the study does not validate: {err}"
    return None


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_commands_exist(path: Path) -> None:
    page = read_page(path)
    bad = []
    for where, args, complete in commands(page):
        problem = check_command(args, complete)
        if problem:
            bad.append(f"{where}: run_study.py {' '.join(args)}\n    -> {problem}")
    assert not bad, f"{page.name}: commands that run_study.py would refuse:\n  " + "\n  ".join(bad)


# ------------------------------------------------------------------------------------- study files
def validate_study_file(file: Path) -> None:
    """``load_study``; a file whose data set needs ``data.root`` and names none is validated with a
    root set the way a user sets it (``--set data.root=...``)."""
    try:
        load_study(file)
    except InputError as err:
        if "data.root" not in str(err):
            raise
        apply_sets(read_study_file(file), ["data.root=data"], str(file))


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_study_files_exist_and_validate(path: Path) -> None:
    page = read_page(path)
    bad = []
    for name in sorted(set(STUDY_FILE.findall(page.text))):
        file = ROOT / name
        if not file.is_file():
            bad.append(f"{name}: no such file")
            continue
        try:
            validate_study_file(file)
        except InputError as err:
            bad.append(f"{name}: {err}")
    assert not bad, f"{page.name}: study files named on the page:\n  " + "\n  ".join(bad)


def _merged(base: dict, part: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in part.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_yaml_snippets_validate(path: Path) -> None:
    """A ``yaml`` block is a study file (it has a ``name``) or part of one: laid over the quickstart
    file, it must validate."""
    page = read_page(path)
    quickstart = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    bad = []
    for lang, body, start in page.blocks:
        if lang not in ("yaml", "yml"):
            continue
        raw = yaml.safe_load(body)
        if not isinstance(raw, dict):
            bad.append(f"line {start}: not a mapping of study sections")
            continue
        try:
            parse_study(raw if "name" in raw else _merged(quickstart, raw), f"{page.name} line {start}")
        except InputError as err:
            bad.append(str(err))
    assert not bad, f"{page.name}: yaml snippets that do not validate:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_repository_paths_exist(path: Path) -> None:
    page = read_page(path)
    text = re.sub(r"[a-z][a-z0-9+.-]*://\S+", " ", page.text)  # URLs name no repository path
    missing = sorted({p.rstrip(".,;:") for p in REPO_PATH.findall(text)} - {""})
    missing = [p for p in missing if not (ROOT / p).exists()]
    assert not missing, f"{page.name}: names paths the repository does not have: {missing}"


# ------------------------------------------------------------------------------------ the settings
def _settings(cls: type, value, prefix: str = ""):
    for f in dataclasses.fields(cls):
        current = getattr(value, f.name)
        if dataclasses.is_dataclass(current):
            yield from _settings(type(current), current, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", current


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def test_every_setting_is_documented_with_its_default() -> None:
    """docs/studies.md's "Every setting" tables list exactly the keys a study file has, each with
    its real default: a new, renamed or re-defaulted setting changes the docs with it."""
    text = (ROOT / "docs" / "studies.md").read_text(encoding="utf-8")
    assert "## Every setting" in text, "docs/studies.md: the section `## Every setting` is gone"
    section = text.split("## Every setting", 1)[1]
    rows = dict(re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", section, re.M))
    settings = dict(_settings(StudySpec, StudySpec()))
    items = {f.name: f.default for cls in (ParamSpec, ObjectiveSpec) for f in dataclasses.fields(cls) if f.name != "name"}
    expected = {**settings, **items}
    missing, unknown = sorted(set(expected) - set(rows)), sorted(set(rows) - set(expected))
    assert not missing and not unknown, (f"docs/studies.md, Every setting: undocumented {missing}; "
                                         f"documented but not settings {unknown}")
    wrong = []
    for key, cell in rows.items():
        if key in ("search.space", "search.objectives"):  # lists of sections, shown in YAML form
            continue
        try:
            shown = yaml.safe_load(cell)
        except yaml.YAMLError:
            shown = cell
        if shown != _plain(expected[key]) and not (shown is None and expected[key] == ""):
            wrong.append(f"{key}: docs say {cell!r}, the default is {expected[key]!r}")
    assert not wrong, "docs/studies.md, Every setting: wrong defaults:\n  " + "\n  ".join(wrong)
