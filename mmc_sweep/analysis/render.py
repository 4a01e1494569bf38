"""Print reports as rich tables, Markdown, CSV or JSON.

Every section becomes a :class:`Block` (title, columns, rows of plain values, caption); each format
renders blocks its own way. JSON prints the report object itself, so scripts get raw numbers.
Units: accuracies and cue reliance are fractions in [0, 1], loss barriers are nats, accuracy
barriers fractions. Barrier columns print as ``cue→ft @cue`` (linear) or ``cue→ft @cue (lmcp)``.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mmc_sweep.analysis.columns import VIEWS, barrier_label, path_label
from mmc_sweep.analysis.seeds import HI, INTERVAL_RULE, LO

FORMATS = ("table", "markdown", "csv", "json")
SECTIONS = ("summary", "methods", "connectivity", "pareto", "importance", "efficiency", "revival", "pairs", "layers")
UNITS = ("accuracies and cue_reliance are fractions in [0, 1]; barriers are loss barriers in nats "
         "(view after @, path kind in parentheses; none = linear)")
CONNECTIVITY_UNITS = ("loss: loss barrier, nats (max over α of the loss above the straight line between the ends); "
                      "acc: accuracy barrier, fraction (max over α of that line above the accuracy)")
BASE_CLEAN_NOTE = "base_clean's cue→ft barriers are the base pair's cue→clean path"
BASE_PAIR_NOTE = "base_clean: the base pair, cue model → clean reference"
CONTROL_NOTE = ("control_clean: the control pair, clean references of two base seeds (the barrier between models "
                "that share a mechanism)")
CTRL_NOTE = "ctrl: the control pair's barrier on the same view and kind, beside each barrier (the scale of 'nothing changed')"
NO_CONTROL_NOTE = ("no control pair (base.control_pair: false): these barriers have no scale; a study with "
                   "control_pair: true shows the control pair's barrier beside each")
HEADERS = {"n_models": "n", "on_objective_front": "objective front"}


@dataclass(frozen=True)
class Block:
    """One printed table: ``rows`` are dicts keyed by ``columns``."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    caption: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def header(column: str) -> str:
    if column in HEADERS:
        return HEADERS[column]
    if column.startswith("control_barrier_"):  # connectivity: the control pair's barrier beside each one
        return f"ctrl {header(column[len('control_'):])}"
    for barrier_type, short in (("barrier_loss_", "loss"), ("barrier_acc_", "acc")):  # connectivity: per view
        if column.startswith(barrier_type) and column[len(barrier_type):] in VIEWS:
            return f"{short} @{column[len(barrier_type):]}"
    label = barrier_label(column)
    if label is not None:
        return label
    return column[len("param_"):] if column.startswith("param_") else column


def cell(column: str, value: Any) -> str:
    """A value as printed in tables and Markdown (CSV and JSON keep raw values)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column == "metric":
        return header(str(value))
    if column == "path":
        return path_label(str(value))
    if isinstance(value, (int, float)) and column.startswith("delta"):
        whole = abs(value) >= 1 and float(value).is_integer()  # image counts (n_clean)
        return f"{value:+.0f}" if whole else f"{value:+.3f}"
    if isinstance(value, float):
        # Parameters span decades (learning rates); metrics are fractions or nats: 3 decimals.
        return f"{value:.4g}" if column.startswith("param_") or column in ("n_clean", "value") else f"{value:.3f}"
    return str(value)


# ---------------------------------------------------------------------------------- analyze blocks
def summary_rows(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Human-readable summary lines (label, value)."""
    by_role = ", ".join(f"{r} {s[f'{r}_finished']}/{s[f'{r}_expected']}" for r in ("base", "baseline", "search"))
    hash_text = s["spec_hash"] or "— (no trials yet)"
    if not s["spec_hash_consistent"]:
        hash_text += "  (WARNING: part files from different specs)"
    lines = [
        ("study", s["study"]), ("folder", s["folder"]), ("spec hash", hash_text),
        ("trials finished", f"{s['trials_finished']} (completed {s['trials_completed']}, failed {s['trials_failed']}, "
                            f"pruned {s['trials_pruned']})"),
        ("finished / expected", by_role),
        ("still missing", str(s["trials_missing"])),
        ("compute time", f"{s['compute_time']} ({s['compute_seconds']:.0f} s, summed over trials)"),
        ("devices", s["devices"] or "—"),
        ("objectives", s["objectives"]),
        ("path kinds", s.get("path_kinds") or "linear"),
        ("base pairs", s.get("pairing") or "—"),
    ]
    if s["trials_without_paths"]:
        lines.append(("without path curves", str(s["trials_without_paths"])))
    if s["unreadable_part_files"]:
        lines.append(("unreadable part files", str(s["unreadable_part_files"])))
    return [{"setting": k, "value": v} for k, v in lines]


def status_lines(s: dict[str, Any]) -> list[str]:
    """What a reader must know before the tables: empty, still running, or damaged."""
    lines = []
    if s["trials_finished"] == 0:
        expected = s["base_expected"] + s["baseline_expected"] + s["search_expected"]
        lines.append(f"study {s['study']}: no finished trials yet (0 of {expected} expected); nothing to analyse.")
    elif s["trials_missing"]:
        lines.append(f"{s['trials_missing']} trial(s) still missing: the study is running or was interrupted; "
                     f"tables use the {s['trials_finished']} finished trial(s).")
    if s["unreadable_part_files"]:
        lines.append(f"{s['unreadable_part_files']} part file(s) could not be read and were skipped.")
    return lines


def analyze_blocks(report: dict[str, Any], sections: tuple[str, ...] = SECTIONS) -> list[Block]:
    s = report["summary"]
    blocks = []
    if "summary" in sections:
        blocks.append(Block(f"Study {s['study']}", ("setting", "value"), tuple(summary_rows(s))))
    if s["trials_finished"] == 0:
        return blocks
    if "methods" in sections:
        rows = tuple(report["methods"])
        blocks.append(Block("Methods", _columns(rows), rows, caption=UNITS,
                            notes=(s["best_rule"], s["views"], BASE_CLEAN_NOTE, "n = models averaged (one per base seed)")))
    if "connectivity" in sections:
        rows = tuple(report["connectivity"])
        blocks.append(Block("Connectivity: barriers of every path kind, path and view", _columns(rows), rows,
                            caption=CONNECTIVITY_UNITS, notes=(s.get("path_views") or s["views"],) + _pair_notes(rows)))
    if "pareto" in sections:
        rows = tuple(report["pareto"])
        blocks.append(Block("Pareto front", _columns(rows, ("trial_id",)), rows,
                            caption=f"non-dominated over {s['pareto_axes']}",
                            notes=("objective front = also non-dominated on the study's objectives alone", s["views"])))
    if "importance" in sections:
        blocks.append(importance_block(report["importance"]))
    if "efficiency" in sections:
        blocks += efficiency_blocks(report, explain_empty=sections == ("efficiency",))
    if "revival" in sections:
        blocks += revival_blocks(report, explain_empty=sections == ("revival",))
    if "pairs" in sections or "layers" in sections:
        blocks += map_blocks(report, sections, explain_empty=len(sections) == 1)
    return blocks


def map_blocks(report: dict[str, Any], sections: tuple[str, ...], explain_empty: bool = False) -> list[Block]:
    """The mechanism map, when ``run_study.py pairs`` measured one; else nothing, or a line saying how."""
    blocks = []
    how = "python run_study.py pairs STUDY_DIR --models base,baselines,top:5 --kinds linear,lmcp"
    if "pairs" in sections and (report["pairs"] or explain_empty):
        rows = tuple(report["pairs"])
        notes = (report["pairs_rule"], "control, scale: loss barriers, nats") if rows else (f"no pairs measured: {how}",)
        blocks.append(Block(f"Mechanism groups ({report['pairs_measured']} pairs x kinds measured)",
                            _columns(rows) if rows else ("kind",), rows, notes=notes))
    if "layers" in sections and (report["layers_pairs"] or explain_empty):
        rows = tuple(report["layers"])
        measured = report["layers_pairs"]
        pairs = ", ".join(f"{p['model_a']} ~ {p['model_b']} ({p['kind']})" for p in measured) if len(measured) <= 6 \
            else f"{len(measured)} pairs x kinds"
        notes = ((report["layers_rule"], f"measured layer by layer: {pairs}") if report["layers_pairs"]
                 else (f"no layer-wise barriers measured: {how} --layers all",))
        blocks.append(Block("Layers that carry the cue", _columns(rows) if rows else ("layer",), rows, notes=notes))
    return blocks


def revival_blocks(report: dict[str, Any], explain_empty: bool = False) -> list[Block]:
    """Cue revival per method and its mean curve, when the study measured it; else nothing, or
    (``explain_empty``: the section was asked for) a line saying why."""
    rows = tuple(report["revival"])
    if not rows:
        return [] if not explain_empty else [Block("Cue revival", ("method",), (), notes=(
            "no trial measured a revival: set revival.steps (e.g. [1, 2, 4, 8, 16, 32]) in the study file",))]
    steps = sorted({r["step"] for r in report["revival_curves"]})
    by_method: dict[str, dict] = {}  # one row per method, a column per step count
    for r in report["revival_curves"]:
        by_method.setdefault(r["method"], {"method": r["method"], **dict.fromkeys(f"step {s}" for s in steps)})
        by_method[r["method"]][f"step {r['step']}"] = r["cue_reliance"]
    curves = tuple(by_method.values())
    return [Block("Cue revival: re-training on cue data brings the cue back", _columns(rows), rows,
                  notes=(report["revival_rule"], "cue_reliance: fraction, 0 = ignores the cue, 1 = follows it")),
            Block("Mean cue reliance after each number of re-training steps", _columns(curves), curves)]


def efficiency_blocks(report: dict[str, Any], explain_empty: bool = False) -> list[Block]:
    """Sample efficiency, when some method was measured at more than one n_clean; else nothing, or
    (``explain_empty``: the section was asked for) a line saying why."""
    goal = tuple(report["efficiency_goal"])
    if not any(r["n_clean_tried"] > 1 for r in goal):
        return [] if not explain_empty else [Block("Sample efficiency", ("method", "n_clean"), (), notes=(
            "no method was measured at more than one n_clean: nothing to read off (search_spaces/sample_efficiency.yaml "
            "runs a grid that is)",))]
    rows = tuple(report["efficiency"])
    return [Block("Sample efficiency: cue reliance and clean accuracy against n_clean", _columns(rows), rows,
                  caption="fractions in [0, 1]; n = models averaged (base seeds and settings)"),
            Block("Smallest n_clean reaching the goal", _columns(goal), goal,
                  notes=(report["efficiency_rule"], "smallest_n_clean empty: no n_clean tried reached it"))]


def _pair_notes(rows: tuple[dict[str, Any], ...]) -> tuple[str, ...]:
    methods = {r["method"] for r in rows}
    notes = (BASE_PAIR_NOTE,) * ("base_clean" in methods)
    notes += (CONTROL_NOTE, CTRL_NOTE) if "control_clean" in methods else (NO_CONTROL_NOTE,) * bool(rows)
    return notes + ("n = models (or pairs) averaged",)


def _columns(rows: tuple[dict[str, Any], ...], empty: tuple[str, ...] = ("method", "role", "trial_id")
             ) -> tuple[str, ...]:
    """A section's columns: the keys of its rows (every row has the same), ``empty`` when it has none."""
    return tuple(rows[0]) if rows else empty


def importance_block(importance: dict[str, Any]) -> Block:
    rows = []
    for metric, entry in importance.items():
        base = {"objective": f"{metric} ({entry['mode']})", "n_trials": entry["n_trials"]}
        if entry["importances"]:
            rows += [{**base, "parameter": p, "importance": v} for p, v in entry["importances"].items()]
        else:
            rows.append({**base, "parameter": None, "importance": None, "note": entry["note"]})
    notes = (f"evaluator: {next(iter(importance.values()))['evaluator']}; shares sum to 1 per objective",) \
        if importance else ("not computed (--no-importance)",)
    cols = ("objective", "n_trials", "parameter", "importance") + (("note",) if any("note" in r for r in rows) else ())
    return Block("Parameter importance", cols, tuple(rows), notes=notes)


def compare_blocks(report: dict[str, Any]) -> list[Block]:
    studies = report["studies"]
    overview = tuple({"study": s["label"], "folder": s["folder"], "completed": s["trials_completed"],
                      "missing": s["trials_missing"], "spec hash": s["spec_hash"]} for s in studies)
    rows = tuple(report["methods"])
    cols = _columns(rows, ("method", "role", "metric"))
    notes = (studies[0]["best_rule"] if studies else "", "delta = study minus the first study; noise: whether the two studies' seed intervals overlap",
             *(f"{s['label']}: {s['views']}" for s in studies))
    return [Block("Studies", ("study", "folder", "completed", "missing", "spec hash"), overview),
            Block("Methods compared", cols, rows, caption=UNITS, notes=notes),
            *efficiency_blocks(report)]


# ------------------------------------------------------------------------------------- formats
def folded(block: Block) -> Block:
    """For the printed formats: each ``<column>_lo`` / ``<column>_hi`` pair folded into its column's
    cell as ``mean [lo, hi]`` (CSV and JSON keep the three raw columns); the rule joins the notes."""
    bounded = [c for c in block.columns if c + LO in block.columns and c + HI in block.columns]
    if not bounded:
        return block
    hidden = {c + end for c in bounded for end in (LO, HI)}
    rows, any_interval = [], False
    for row in block.rows:
        out = {c: v for c, v in row.items() if c not in hidden}
        for c in bounded:
            lo, hi = row.get(c + LO), row.get(c + HI)
            if row.get(c) is not None and lo is not None and hi is not None:
                out[c] = f"{cell(c, row[c])} [{cell(c, lo)}, {cell(c, hi)}]"
                any_interval = True
        rows.append(out)
    return Block(block.title, tuple(c for c in block.columns if c not in hidden), tuple(rows), block.caption,
                 block.notes + (INTERVAL_RULE,) * any_interval)


def _console(out: TextIO, tables: list[Table]) -> Console:
    """A terminal gets its own width; a pipe or file at least 200 columns (rich's default is 80),
    more when a table needs it whole (a method table with three path kinds: ~250)."""
    if out.isatty():
        return Console(file=out, highlight=False, soft_wrap=False)
    probe = Console(width=10_000, file=io.StringIO())
    needed = max((probe.measure(t).minimum for t in tables), default=0)
    width = max(200, shutil.get_terminal_size((200, 40)).columns, needed)
    return Console(file=out, width=width, highlight=False, soft_wrap=False)


def _rich_table(block: Block) -> Table:
    table = Table(title=f"[bold]{block.title}[/]", caption=block.caption or None, title_justify="left")
    numeric = {c for c in block.columns if any(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                                               for r in block.rows)}
    cells = [[cell(c, row.get(c)) for c in block.columns] for row in block.rows]
    for i, col in enumerate(block.columns):
        # Values keep their width (headers wrap instead) unless a single value is very long.
        widest = min(32, max((len(r[i]) for r in cells), default=0))
        table.add_column(header(col), justify="right" if col in numeric else "left", overflow="fold",
                         min_width=widest)
    for values in cells:
        table.add_row(*values)
    if not block.rows:
        table.add_row(*(["(none)"] + [""] * (len(block.columns) - 1)))
    return table


def print_rich(blocks: list[Block], lines: list[str], out: TextIO) -> None:
    blocks = [folded(block) for block in blocks]
    tables = [_rich_table(block) for block in blocks]
    console = _console(out, tables)
    for line in lines:
        console.print(f"[bold yellow]{line}[/]")
    for block, table in zip(blocks, tables):
        console.print(table)
        for note in block.notes:
            console.print(f"  [dim]{escape(note)}[/]")
        console.print()


def markdown(blocks: list[Block], lines: list[str]) -> str:
    parts = [f"> {line}\n" for line in lines]
    for block in map(folded, blocks):
        parts.append(f"## {block.title}\n")
        esc = [header(c).replace("|", "\\|") for c in block.columns]
        parts.append("| " + " | ".join(esc) + " |")
        parts.append("|" + "|".join("---" for _ in block.columns) + "|")
        for row in block.rows:
            parts.append("| " + " | ".join(cell(c, row.get(c)).replace("|", "\\|") for c in block.columns) + " |")
        if not block.rows:
            parts.append("| (none) |" + " |" * (len(block.columns) - 1))
        parts.append("")
        parts += [f"*{text}*  " for text in ((block.caption,) if block.caption else ()) + block.notes]
        parts.append("")
    return "\n".join(parts)


def csv_text(blocks: list[Block], raw_summary: dict[str, Any] | None) -> str:
    """CSV with raw values; several sections are separated by a ``# <title>`` line and a blank line."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    several = len(blocks) > 1
    for i, block in enumerate(blocks):
        if several:
            buf.write(("\n" if i else "") + f"# {block.title}\n")
        if raw_summary is not None and block.columns == ("setting", "value"):
            writer.writerow(["key", "value"])
            writer.writerows([k, "" if v is None else v] for k, v in raw_summary.items())
            continue
        writer.writerow(block.columns)
        writer.writerows(["" if row.get(c) is None else row.get(c) for c in block.columns] for row in block.rows)
    return buf.getvalue()


def json_text(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False)


def emit(report: dict[str, Any], blocks: list[Block], lines: list[str], fmt: str, out: TextIO,
         raw_summary: dict[str, Any] | None = None) -> None:
    """Write one report in format ``fmt`` to ``out``; for csv and json the status lines go to stderr
    so that stdout stays machine-readable."""
    if fmt in ("csv", "json"):
        for line in lines:
            print(line, file=sys.stderr)
    if fmt == "json":
        out.write(json_text(report) + "\n")
    elif fmt == "csv":
        out.write(csv_text(blocks, raw_summary))
    elif fmt == "markdown":
        out.write(markdown(blocks, lines))
    else:
        print_rich(blocks, lines, out)
