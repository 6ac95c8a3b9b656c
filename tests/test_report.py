"""The report: every section and its plots, self-contained (no reference to the network), in HTML
and in Markdown, for a system with a queueing model and for one without."""

from __future__ import annotations

import html as html_module
import re
import shlex
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import typer

import sim.jobs
from sim.cli import main
from sim.cli.common import app
from sim.executors import SerialExecutor
from sim.report import build_report, markdown_text, render, write_report
from sim.runner import ReplicationFailure

MMC = """\
name: report-mmc
description: An M/M/c queue, so that theory applies.
seed: 4
duration: 11m
warmup: 1m
replications: 3
producers:
  - name: web
    arrivals: {process: poisson, rate: 8/s}
    sends_to: q
brokers:
  - name: q
    kind: fifo
workers:
  - name: pool
    consumes: q
    count: 10
    service_time: {dist: exponential, mean: 1s}
slo: {latency_mean: 1.5s, latency_p99: 8s}
"""

SECTIONS = ["verdict", "capacity", "system", "summary", "latency", "over-time", "fates", "checks", "theory", "assumptions", "scenario-file"]
FIGURES = ["diagram", "latency", "throughput", "queue_length", "utilization", "capacity_search", "headroom"]


class Page(HTMLParser):
    """Ids of sections, image sources, anything that could reach outside, and tag balance."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.external, self.stack, self.errors = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None and not (value.startswith("data:image/png;base64,") or value.startswith("#")):
                self.external.append(value)
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.external.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "mmc.yaml"
    path.write_text(MMC)
    return path


@pytest.fixture(scope="module")
def html_report(scenario, tmp_path_factory):
    """The report through the command line, with a capacity search on the worker count."""
    out = tmp_path_factory.mktemp("html")
    argv = sys.argv
    sys.argv = ["asyncsim", "report", str(scenario), "--out", str(out), "-j", "2", "--vary", "workers.pool.count"]
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    finally:
        sys.argv = argv
    return (out / "report.html").read_text()


def test_every_section_and_its_plots(html_report):
    page = Page()
    page.feed(html_report)
    assert page.sections == SECTIONS
    assert len(page.images) == len(FIGURES) and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert not page.errors and not page.stack, (page.errors, page.stack)


def test_self_contained_no_network_reference(html_report):
    assert "http://" not in html_report and "https://" not in html_report
    assert "//" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html_report).replace("://", "")
    page = Page()
    page.feed(html_report)
    assert page.external == []
    assert "<style>" in html_report and "@import" not in html_report and "url(" not in html_report


def test_the_headline_and_the_capacity_recommendation(html_report):
    assert "Meets its SLO with 95% confidence" in html_report
    assert re.search(r"Smallest <code>workers\.pool\.count</code> meeting every objective with confidence: <strong>\d+</strong> \(the scenario has 10\)", html_report)
    assert "Why the search stopped:" in html_report and "meets every objective with confidence, and" in html_report
    assert "Analytic starting point:</strong> 10 (M/M/c (Erlang C), exact)" in html_report
    assert "the SLO holds up to <strong>" in html_report


def test_checks_theory_and_assumptions(html_report):
    assert "Little's law <span class=\"status ok\">holds</span>" in html_report
    assert "Conservation <span class=\"status ok\">holds</span>" in html_report
    assert "<strong>M/M/c (Erlang C)</strong>" in html_report
    theory = html_report[html_report.index('id="theory"'):html_report.index('id="assumptions"')]
    assert theory.count(">exact<") >= 10 and "approximation</span>" not in theory
    assert "end-to-end latency, mean" in theory and "wait in q, p99" in theory
    models = html_report[html_report.index("documented simplifications</h3>"):html_report.index('id="scenario-file"')]
    for name, module in (("FifoBroker", "models.fifo"), ("WorkerPool", "models.workers"), ("Producer", "models.producer")):
        assert f"<h4>{name} <span" in models and f"<code>{module}</code>" in models
    # prose for a review: paragraphs and lists, code as <code>, no Sphinx roles or reST literals left
    assert "<p>" in models and "<li>" in models and "<code>count</code>" in models
    assert ":class:`" not in models and "``" not in models and "<pre>" not in models
    assert "warm-up excluded from every statistic" in html_report
    assert "name: report-mmc" in html_report  # the scenario file itself


def test_markdown_with_images_beside_it(scenario, tmp_path):
    written = write_report(scenario, tmp_path / "review.md", fmt="md", executor=SerialExecutor(), replications=2,
                           overrides=["duration=3m"])
    text = written[0].read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images == ["review-diagram.png", "review-latency.png", "review-throughput.png", "review-queue_length.png", "review-utilization.png"]
    for name in images:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    for heading in ("## Verdict against the SLO", "## The system", "## Summary", "## Latency", "## What happened to the messages",
                    "## Checks", "## Simulation against theory", "## Assumptions and simplifications", "## The scenario file"):
        assert heading in text
    assert "| mean latency (latency_mean) | 1.5s |" in text
    assert "http://" not in text and "https://" not in text


def test_a_pipeline_has_no_model_but_a_full_report(root):
    report = build_report(root / "scenarios" / "image-pipeline.yaml", overrides=["duration=4m", "warmup=30s"], replications=2,
                          executor=SerialExecutor())
    html = render(report, "html")
    assert "No analytic model applies: the system has 2 brokers" in html
    assert html.count("data:image/png;base64,") == 5
    assert "http://" not in html and "https://" not in html
    context = report.context()
    assert [r["objective"] for r in context["slo_rows"]] == ["latency_p99", "max_rejection_rate"]
    assert {c["boundary"] for c in context["littles"]} >= {"resize-queue", "cdn-queue", "resizer", "cdn-pusher"}


def test_a_report_whose_replications_fail_is_written_and_exits_1(scenario, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sim.jobs, "safe_replication", lambda s, r, seed, progress=None: ReplicationFailure(r, "RuntimeError: boom", ""))
    out = tmp_path / "failed"
    monkeypatch.setattr(sys, "argv", ["asyncsim", "report", str(scenario), "--out", str(out), "-j", "1", "-r", "2"])
    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 1 and "No replication finished" in (out / "report.html").read_text()
    assert "2 of the runs the report needs failed (replications raised); the first, replication 0: RuntimeError: boom" in capsys.readouterr().err


def test_bad_format_exits_2(scenario, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["asyncsim", "report", str(scenario), "--format", "pdf"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2 and "'pdf' is not a format" in capsys.readouterr().err


HOSTILE = MMC.replace("name: report-mmc", "name: <script>alert(1)</script>").replace(
    "description: An M/M/c queue, so that theory applies.",
    'description: "An M/M/c queue\\n# heading\\nwith a | pipe and <iframe src=x></iframe>"',
).replace("name: q\n", "name: _q_\n").replace("sends_to: q\n", "sends_to: _q_\n").replace("consumes: q\n", "consumes: _q_\n")
MD_HEADINGS = ["## Verdict against the SLO", "## The system", "## Summary", "## Latency", "## Throughput, queue depth and utilisation over time",
               "## What happened to the messages", "## Checks", "## Simulation against theory", "## Assumptions and simplifications",
               "### The models and their documented simplifications", "## The scenario file"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A scenario whose name, description, broker name and --set values carry HTML and Markdown, rendered both ways."""
    path = tmp_path_factory.mktemp("hostile") / "hostile.yaml"
    path.write_text(HOSTILE)
    report = build_report(path, overrides=["duration=2m", "warmup=20s", "name=<script>alert(1)</script>"],
                          replications=2, executor=SerialExecutor())
    return render(report, "html"), render(report, "md", {f.name: f"{f.name}.png" for f in report.figures})


def test_html_escapes_user_strings(hostile):
    html, _ = hostile
    assert "<script" not in html and "<iframe" not in html
    assert "<h1>&lt;script&gt;alert(1)&lt;/script&gt;: simulation report</h1>" in html
    page = Page()
    page.feed(html)
    assert page.external == [] and not page.errors


def test_markdown_escapes_user_strings(hostile):
    _, md = hostile
    lines = md.splitlines()
    assert "<script" not in md and "<iframe" not in md
    assert lines[0] == r"# &lt;script&gt;alert(1)&lt;/script&gt;: simulation report"
    assert [line for line in lines[1:] if line.startswith("#")] == MD_HEADINGS
    assert r"An M/M/c queue # heading with a \| pipe and &lt;iframe src=x&gt;&lt;/iframe&gt;" in lines
    # every table row has as many unescaped cell separators as its table's header
    columns = None
    for line in lines:
        if not line.startswith("|"):
            columns = None
            continue
        count = len(re.findall(r"(?<!\\)\|", line))
        columns = columns or count
        assert count == columns, line
    assert r"| broker \_q\_ | wait mean |" in md and r"name=&lt;script&gt;alert(1)&lt;/script&gt;" in lines[2]


def test_markdown_escape_neutralises_structure():
    assert markdown_text("a\nb\r\nc") == "a b c"
    assert markdown_text("# x") == r"\# x" and markdown_text("  > quote") == r"&gt; quote" and markdown_text("- item") == r"\- item"
    assert markdown_text("1. first") == r"1\. first" and markdown_text("12) x") == r"12\) x" and markdown_text("===") == r"\==="
    assert markdown_text("a|b *c* _d_ `e` [f](g) \\ & <h>") == r"a\|b \*c\* \_d\_ \`e\` \[f\](g) \\ &amp; &lt;h&gt;"
    assert markdown_text("-- x") == "-- x" and markdown_text("--") == r"\--" and markdown_text("+ x") == r"\+ x"
    assert markdown_text("image-pipeline: 2.5s") == "image-pipeline: 2.5s" and markdown_text("1.5s") == "1.5s"
    assert markdown_text("-34ms") == "-34ms" and markdown_text("#x") == r"\#x"


REPRODUCED = ["-r", "3", "--seed", "5", "--set", "workers.pool.count=9", "--set", "duration=2m", "--set", "warmup=20s",
              "--vary", "workers.pool.count", "--slo", "latency_p99=2s", "--set", "description=it's a \"test\" $HOME"]


def _parse(args):
    """The settings the command line's own parser makes of ``asyncsim report ARGS``."""
    command = typer.main.get_command(app).commands["report"]
    return command.make_context("report", list(args)).params


def test_reproduce_with_gives_every_option_that_changes_the_result(scenario, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["asyncsim", "report", str(scenario), "--out", str(tmp_path), "--format", "md", "-j", "1", *REPRODUCED])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code in (0, None)
    lines = (tmp_path / "report.md").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith("Reproduce with:"))
    assert lines[at + 2] == "<pre>"
    command = html_module.unescape(lines[at + 3])
    argv = shlex.split(command)
    assert argv[:3] == ["asyncsim", "report", str(scenario)]
    for option, value in zip(REPRODUCED[::2], REPRODUCED[1::2]):
        assert any(argv[i:i + 2] == [option, value] for i in range(len(argv))), (option, value)
    assert "--format" in argv and argv[argv.index("--format") + 1] == "md"
    given, reproduced = _parse([str(scenario), *REPRODUCED]), _parse(argv[2:])
    assert reproduced.pop("fmt") == "md" and given.pop("fmt") == "html"
    assert reproduced == given
