"""Barriers of a path: how far loss rises above (accuracy falls below) the straight line between its endpoints."""
from __future__ import annotations

import numpy as np


def barriers(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per view of one path's rows: ``barrier_loss``/``barrier_acc`` (max over alpha above/below the
    straight line between the endpoints) and ``barrier_mid_loss``/``barrier_mid_acc`` (the same at
    alpha = 0.5 only).

    Loss barriers are in nats, accuracy barriers in fraction. The line meets the curve at both
    endpoints, so the max-based barriers are >= 0; the midpoint ones can be negative.
    """
    out: dict[str, dict[str, float]] = {}
    for view in dict.fromkeys(r["view"] for r in rows):
        pts = sorted((r["alpha"], r["loss"], r["acc"]) for r in rows if r["view"] == view)
        alpha = np.array([p[0] for p in pts])
        loss = np.array([p[1] for p in pts])
        acc = np.array([p[2] for p in pts])
        line_loss = (1 - alpha) * loss[0] + alpha * loss[-1]
        line_acc = (1 - alpha) * acc[0] + alpha * acc[-1]
        out[view] = {
            "barrier_loss": float(np.max(loss - line_loss)),
            "barrier_acc": float(np.max(line_acc - acc)),
            "barrier_mid_loss": float(np.interp(0.5, alpha, loss) - (loss[0] + loss[-1]) / 2),
            "barrier_mid_acc": float((acc[0] + acc[-1]) / 2 - np.interp(0.5, alpha, acc)),
        }
    return out
