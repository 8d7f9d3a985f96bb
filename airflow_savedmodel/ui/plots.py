"""The release page's plots, drawn by matplotlib as inline SVG from a bake's series (one entry
per request, release/evidence.py ``series``): canary's and stable's latency distributions, the
fraction of answers that differed, and each side's error rate over the bake.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

CANARY, STABLE = "#d9480f", "#1c7ed6"  # one colour per side across the plots


def _figure(title: str) -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in the server's threads

    figure = Figure(figsize=(6.4, 3.0), layout="constrained")
    axes = figure.subplots()
    axes.set_title(title, fontsize=11)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _svg(figure: Any) -> str:
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]  # inline: no XML prolog or doctype


def _rolling(flags: Sequence[bool | None], window: int) -> list[float | None]:
    """The fraction of True among the last ``window`` known flags, at each point."""
    out: list[float | None] = []
    seen: list[bool] = []
    for flag in flags:
        if flag is not None:
            seen.append(bool(flag))
        recent = seen[-window:]
        out.append(sum(recent) / len(recent) if recent else None)
    return out


def latency(series: Mapping[str, Sequence[Any]]) -> str:
    """Canary's and stable's latency as cumulative distributions (ms, log scale)."""
    figure, axes = _figure("Latency: canary against stable")
    for key, label, colour in (("canary_ms", "canary", CANARY), ("stable_ms", "stable", STABLE)):
        values = sorted(float(v) for v in series.get(key) or [] if v is not None)
        if values:
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            axes.step(values, fractions, where="post", label=f"{label} (n={len(values)})", color=colour)
    from matplotlib.ticker import LogFormatter

    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    axes.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("fraction of requests")
    axes.set_ylim(0, 1.02)
    axes.legend(loc="lower right", fontsize=8)
    return _svg(figure)


def differing(series: Mapping[str, Sequence[Any]], window: int = 20) -> str:
    """The fraction of canary's answers that differed from stable's, over the bake."""
    figure, axes = _figure("Answers that differ from stable")
    at = list(series.get("at") or [])
    flags = list(series.get("differs") or [])
    if any(f is not None for f in flags):
        axes.plot(at, _rolling(flags, window), color=CANARY, label=f"last {window} compared")
        axes.legend(loc="upper right", fontsize=8)
    else:
        axes.text(0.5, 0.5, "outputs were not compared", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("seconds into the bake")
    axes.set_ylabel("fraction differing")
    axes.set_ylim(-0.02, 1.02)
    return _svg(figure)


def errors(series: Mapping[str, Sequence[Any]], window: int = 20) -> str:
    """Canary's and stable's error rate over the bake."""
    figure, axes = _figure("Error rate over the bake")
    at = list(series.get("at") or [])
    for key, label, colour in (("canary_error", "canary", CANARY), ("stable_error", "stable", STABLE)):
        flags = list(series.get(key) or [])
        if any(f is not None for f in flags):
            axes.plot(at, _rolling(flags, window), color=colour, label=f"{label}, last {window} requests")
    axes.set_xlabel("seconds into the bake")
    axes.set_ylabel("error rate")
    axes.set_ylim(-0.02, 1.02)
    axes.legend(loc="upper right", fontsize=8)
    return _svg(figure)


def all_plots(series: Mapping[str, Sequence[Any]] | None) -> dict[str, str]:
    """Every plot of a bake, by name (none when the release kept no bake)."""
    if not series or not series.get("at"):
        return {}
    return {"latency": latency(series), "differing": differing(series), "errors": errors(series)}
