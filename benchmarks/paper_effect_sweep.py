#!/usr/bin/env python
"""The seed sweep that calibrates tests/test_paper_effect.py: the paper's qualitative claims,
measured on the embedded data at the test's tiny sizes, one row per base seed, then the smallest
and largest value of each quantity over the seeds (the test's margins sit inside those).

    python benchmarks/paper_effect_sweep.py [--seeds 0 1 2 3 4 5 6 7] [--broken no_losses|cut_barrier_grad]

Pairs are independent (each seed's clean reference has its own initialisation and batch order).
``--broken`` measures a broken CBFT instead, to show the test's claims catch it: ``no_losses``
switches its barrier and invariance terms off (it is then naive fine-tuning), ``cut_barrier_grad``
stops the barrier loss's gradient at the interpolated weights. Last line: the claims that failed.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import paper_effect  # noqa: E402  (the test's own recipe and claims, shared)
from mmc_sweep import finetune  # noqa: E402
from paper_effect import failed_claims, measure  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 6, 7])
    parser.add_argument("--broken", choices=("no_losses", "cut_barrier_grad"))
    args = parser.parse_args()
    if args.broken == "no_losses":
        paper_effect.METHODS["cbft"] = dataclasses.replace(paper_effect.METHODS["cbft"], lambda_barrier=0.0,
                                                           lambda_invariance=0.0)
    elif args.broken == "cut_barrier_grad":
        intact = finetune.interpolated_state
        finetune.interpolated_state = lambda start, end, t: {k: v.detach() for k, v in intact(start, end, t).items()}
    t0 = time.perf_counter()
    rows = measure(tuple(args.seeds))
    for seed, row in zip(args.seeds, rows):
        print(f"seed {seed}: " + " ".join(f"{k}={v:.3f}" for k, v in row.items()), flush=True)
    print(f"{len(rows)} seeds in {time.perf_counter() - t0:.0f} s")
    keys = list(rows[0])
    finite = {k: [r[k] for r in rows if r[k] == r[k]] for k in keys}  # the last seed has no control pair
    print("range over seeds: " + " ".join(f"{k}=[{min(v):.3f},{max(v):.3f}]" for k, v in finite.items()))
    print(f"failed_claims={failed_claims(rows) or 'none'}")  # the test asks for none
    return 0


if __name__ == "__main__":
    sys.exit(main())
