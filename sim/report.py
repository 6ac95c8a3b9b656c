"""The design-review report: one self-contained HTML file (or Markdown with PNGs beside it).

``write_report`` runs the scenario's replications (and, with ``vary``, a capacity search and the
headroom of its answer) and renders, with the jinja2 templates in ``sim/templates``:

- the headline: the SLO verdict per objective (met / not met / uncertain, from the 95% CI), and
  the capacity recommendation when asked;
- the system as a diagram of producers, brokers and worker pools (matplotlib boxes and arrows);
- a summary table with confidence intervals; latency percentiles and their distribution;
  throughput, queue depth and worker utilisation over time;
- the fate of messages (processed, rejected, lost, dead-lettered, in flight; duplicates);
- Little's law on every boundary and the conservation of messages;
- simulation against queueing theory where the system is a single stage with a formula, each
  value marked exact or approximate;
- the assumptions: the measurement window, replications and intervals, random streams, and each
  model's documented simplifications (its class docstring).

Plots are PNG embedded as base64 and the CSS is inline: the file has no reference to anything
outside itself and renders with no network.
"""

from __future__ import annotations

import base64
import html
import io
import re
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import quote

from .capacity import CapacityPlan, plan_capacity, slo_overrides
from .diagram import diagram_size, draw_diagram
from .executors import Executor, make_executor
from .jobs import Job, run_jobs
from .loading import load_scenario
from .report_content import (
    assumptions,
    capacity_context,
    docstring_models,
    fates,
    littles_rows,
    slo_table,
    summary_rows,
    theory_section,
    verdict_headline,
)
from .result import Result
from .schema import Scenario
from .units import format_duration
from .warmup import AUTO

FIGURE_DPI = 100


@dataclass
class Figure:
    name: str
    title: str
    png: bytes
    caption: str = ""

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _render(draw: Callable, size=(8, 4.5)) -> bytes:
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=size, layout="constrained")
    draw(figure.subplots())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    return buffer.getvalue()


@dataclass
class Report:
    """Everything the templates show."""

    scenario: Scenario
    result: Result
    source: Path
    overrides: list[str]
    seed: int
    figures: list[Figure] = field(default_factory=list)
    plan: CapacityPlan | None = None
    vary: str | None = None
    search_range: tuple[int, int] | None = None
    slo: list[str] = field(default_factory=list)
    headroom: bool = True
    executor: str = ""
    wall_s: float = 0.0

    @property
    def failures(self) -> list[str]:
        """What failed among the runs the report needs: replications of the scenario, and
        evaluations of the capacity search."""
        failed = [f"replication {f.replication}: {f.error}" for f in self.result.failures]
        if self.plan is not None:
            failed += [f"{r.label}: {r.error}" for r in self.plan.failed_runs]
        return failed

    def reproduce_command(self, fmt: str = "html") -> str:
        """The ``asyncsim report`` command that makes this report again, quoted for a POSIX shell:
        the file, every ``--set``, the replications and seed actually used, the capacity search
        and its objectives, and the format. (``--jobs`` and ``--cluster`` change only where the
        replications run, not what they give.) The count of replications is given with ``-r``
        unless it is 1, which the command line's ``-r`` refuses and only the file can ask for."""
        args = ["asyncsim", "report", str(self.source)]
        for override in self.overrides:
            args += ["--set", override]
        if self.result.requested_replications > 1:
            args += ["-r", str(self.result.requested_replications)]
        args += ["--seed", str(self.seed)]
        if self.vary:
            args += ["--vary", self.vary if self.search_range is None else f"{self.vary}={self.search_range[0]}..{self.search_range[1]}"]
            if not self.headroom:
                args.append("--no-headroom")
        for objective in self.slo:
            args += ["--slo", objective]
        args += ["--format", fmt]
        return shlex.join(args)

    def context(self, fmt: str = "html") -> dict:
        summary = self.result.summary()
        slo_rows = slo_table(self.result)
        verdict, headline = verdict_headline(self.result, slo_rows)
        try:
            package_version = version("asyncsim")
        except PackageNotFoundError:
            package_version = "unknown"
        source_text = self.source.read_text() if self.source.exists() else ""
        capacity = None
        if self.plan is not None:
            capacity = capacity_context(self.plan, self.scenario, self.vary)
        warnings = self.result.warnings()
        conservation = summary["conservation"]
        return {
            "title": f"{self.scenario.name}: simulation report",
            "scenario": self.scenario,
            "description": self.scenario.description,
            "source": str(self.source),
            "source_text": source_text,
            "overrides": self.overrides,
            "command": self.reproduce_command(fmt),
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "version": package_version,
            "seed": self.seed,
            "replications": len(self.result.results),
            "requested": self.result.requested_replications,
            "duration": format_duration(self.scenario.duration),
            "warmup": ("auto, at most " if self.scenario.warmup == AUTO else "") + format_duration(self.result.warmup_s),
            "window": format_duration(self.result.window_s),
            "executor": self.executor,
            "wall": f"{self.wall_s:.1f}s",
            "verdict": verdict,
            "headline": headline,
            "slo_rows": slo_rows,
            "capacity": capacity,
            "summary_rows": summary_rows(summary),
            "percentiles": [r for r in summary_rows(summary) if r["section"] == "system" and r["label"].startswith("latency")],
            "fates": fates(self.result, summary),
            "littles": littles_rows(self.result),
            "littles_ok": all(c["ok"] for c in self.result.littles_law_summary()),
            "conservation_ok": conservation["ok"],
            "in_flight": f"{conservation['in_flight_at_end']:,}",
            "held": conservation.get("held_by_components_at_end"),
            "theory": theory_section(self.scenario, self.result),
            "assumptions": assumptions(self.scenario, self.result, self.seed),
            "models": docstring_models(self.scenario, self.seed),
            "warnings": warnings,
            "failures": [{"replication": f.replication, "error": f.error} for f in self.result.failures],
            "figures": {f.name: f for f in self.figures},
        }


def build_report(
    source: str | Path,
    overrides: Sequence[str] = (),
    replications: int | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    cluster: str | None = None,
    executor: Executor | None = None,
    vary: str | None = None,
    slo: Sequence[str] = (),
    headroom: bool = True,
    plan: CapacityPlan | None = None,
    search_range: tuple[int, int] | None = None,
    on_replication: Callable[[int, int], None] | None = None,
) -> Report:
    """Run the scenario (and the capacity search with ``vary``, between ``search_range``'s values
    when given, unless a ``plan`` from :func:`sim.capacity.plan_capacity` is given) and draw the
    report's figures."""
    started = time.perf_counter()
    source = Path(source)
    base = list(overrides)
    if slo:
        base, _ = slo_overrides(source, overrides, slo)
    scenario = load_scenario(source, base)
    n = scenario.replications if replications is None else replications
    seed = scenario.seed if seed is None else seed
    owned = executor is None
    runner = make_executor(jobs, cluster) if owned else executor
    description = runner.describe()
    try:
        done = {"n": 0}

        def counted(_j, _o):
            done["n"] += 1
            if on_replication is not None:
                on_replication(done["n"], n)

        results, failures = [], []
        for _j, res, fail in run_jobs([Job(scenario, seed, range(n))], runner, counted):
            results, failures = res, fail
        result = Result(scenario, seed, n, results, failures)
        if plan is not None:
            vary = vary or plan.parameter
        elif vary:
            low, high = search_range if search_range is not None else (0, None)
            plan = plan_capacity(source, vary, slo, overrides, replications=max(n, 2), seed=seed, executor=runner, headroom=headroom,
                                 minimum=low, maximum=high)
    finally:
        if owned:
            runner.close()
    report = Report(scenario, result, source, list(overrides), seed, plan=plan, vary=vary, search_range=search_range, slo=list(slo), headroom=headroom,
                    executor=description)
    report.figures = _figures(report)
    report.wall_s = time.perf_counter() - started
    return report


def _figures(report: Report) -> list[Figure]:
    result, scenario = report.result, report.scenario
    figures = [Figure("diagram", "The system", _render(lambda ax: draw_diagram(scenario, result, ax), diagram_size(scenario)),
                      "Producers (blue) send to brokers (amber), consumed by worker pools (green); arrows carry the long-run rate and the offered load per worker ρ; boxes show the measured mean wait and busy fraction.")]
    if result.results:
        figures += [
            Figure("latency", "Latency distribution", _render(lambda ax: result.plot_latency(ax=ax)),
                   "End-to-end latency of processed messages, all replications pooled (log scale), with the mean per-replication p50, p99 and p99.9."),
            Figure("throughput", "Throughput over time", _render(lambda ax: result.plot_throughput(ax=ax)),
                   "Messages processed per second per time bin: the mean over replications, the band their range; the warm-up is greyed."),
            Figure("queue_length", "Queue depth over time", _render(lambda ax: result.plot_queue_length(ax=ax)),
                   "Messages in each broker per time bin (mean over replications, band: their range)."),
            Figure("utilization", "Worker utilisation over time", _render(lambda ax: result.plot_utilization(ax=ax)),
                   "Busy fraction of each worker pool per time bin (mean over replications, band: their range)."),
        ]
    plan = report.plan
    if plan is not None and any(r.phase == "search" and r.objectives for r in plan.runs):
        if any(k.startswith("latency") for k in plan.slo):
            figures.append(Figure("capacity_search", "Capacity search", _render(lambda ax: plan.plot_search(ax)),
                                  "Each latency objective at the values the search simulated (mean and 95% CI), against its target."))
    if plan is not None and any(r.phase == "headroom" and r.objectives for r in plan.runs) and any(k.startswith("latency") for k in plan.slo):
        figures.append(Figure("headroom", "Headroom", _render(lambda ax: plan.plot_headroom(ax)),
                              "Each latency objective as the load grows (mean and 95% CI), against its target."))
    return figures


def _environment(fmt: str):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sim", "templates"),
        autoescape=fmt == "html",
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md"] = markdown_text
    env.filters["code_spans"] = html_code_spans if fmt == "html" else str
    return env


def html_code_spans(text: str):
    """Our own prose (a model's description) in HTML: escaped, and each `code` span as <code>."""
    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]|~])")


def markdown_text(value: Any) -> str:
    """``value`` as one line of Markdown text that reads as written wherever the template puts it
    (a heading, a paragraph, a table cell): HTML's ``&``, ``<`` and ``>`` become entities, line
    breaks become spaces and leading spaces go, the characters of inline markup and the table's
    ``|`` are backslash-escaped, and so is a leading character that would start a heading, a list
    item, a thematic break or a setext underline (``# x``, ``- x``, ``1. x``, ``---``, ``===``)."""
    text = html.escape(" ".join(str(value).splitlines()), quote=False).lstrip()
    text = _MARKDOWN_INLINE.sub(r"\\\1", text)
    text = re.sub(r"^(#|[+-](?=\s|$)|[=-](?=[=-]*\s*$))", r"\\\1", text)
    return re.sub(r"^(\d+)([.)])(?=\s|$)", r"\1\\\2", text)


def render(report: Report, fmt: str = "html", image_names: dict[str, str] | None = None) -> str:
    """The report as HTML (images inline) or Markdown (images referenced by ``image_names``)."""
    context = report.context(fmt)
    context["images"] = image_names or {}
    template = _environment(fmt).get_template("report.html.j2" if fmt == "html" else "report.md.j2")
    return template.render(**context)


def write_report(
    source: str | Path,
    out_path: str | Path,
    fmt: str = "html",
    **options,
) -> list[Path]:
    """Build the report and write it to ``out_path`` (see :func:`save_report`). Returns the paths
    written (the report first)."""
    return save_report(build_report(source, **options), out_path, fmt)


def save_report(report: Report, out_path: str | Path, fmt: str = "html") -> list[Path]:
    """Write ``report`` to ``out_path``; for Markdown, PNGs beside it named ``<stem>-<figure>.png``.
    Returns the paths written (the report first)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = [out_path]
    if fmt == "md":
        names = {}
        for figure in report.figures:
            path = out_path.with_name(f"{out_path.stem}-{figure.name}.png")
            path.write_bytes(figure.png)
            names[figure.name] = quote(path.name)
            written.append(path)
        out_path.write_text(render(report, "md", names))
    else:
        out_path.write_text(render(report, "html"))
    return written


__all__ = ["Report", "build_report", "write_report", "save_report", "render"]
