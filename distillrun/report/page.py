"""The run report as one self-contained HTML page.

`render_page` is a pure function of a `RunReport`: styles are inline, charts are SVG data URIs
(`plots`), and there is no script at all. A Content-Security-Policy forbids every outside
fetch, so the page provably needs no network, and a stray reference to one would show up as a
console error in the browser test instead of going unnoticed.

Every number taken from the artifacts is wrapped as `<span data-metric=NAME data-value=JSON>`,
with the exact value beside its formatted text, so tests can check the page against the
artifacts without parsing formatted text.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape

from distillrun import __version__
from distillrun.report import plots
from distillrun.report.model import (
    Accuracy,
    Coverage,
    Data,
    Header,
    Money,
    Prediction,
    Quality,
    ReasonGroup,
    RunReport,
    Scores,
    StageRow,
    StageSpend,
    Training,
    Uses,
    seconds_between,
)

DASH = "\N{EN DASH}"
TIMES = "\N{MULTIPLICATION SIGN}"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
ANSWER_CHARS = 600
"""How much of a student's raw answer is shown when no SQL could be read from it."""

_CSS = """
:root { --ink:#212529; --muted:#6c757d; --line:#e3e6ea; --bg:#f4f5f7; --card:#fff;
  --ok:#2b8a3e; --bad:#c92a2a; --warn:#d9480f; --accent:#364fc7; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
.top { background:#1c2340; color:#fff; padding:28px 0 22px; }
.wrap { max-width:1180px; margin:0 auto; padding:0 32px; }
.eyebrow { text-transform:uppercase; letter-spacing:.08em; font-size:11px; color:#a5b4fc; }
.top h1 { margin:4px 0 6px; font-size:28px; font-weight:700; display:flex; gap:12px;
  align-items:center; flex-wrap:wrap; }
.top .summary { color:#dbe2ff; font-size:14px; }
.top .where { color:#aab4d8; font-size:12.5px; margin-top:4px; word-break:break-all; }
.top nav { margin-top:14px; display:flex; gap:6px; flex-wrap:wrap; }
.top nav a { color:#fff; text-decoration:none; font-size:13px; padding:4px 12px;
  border-radius:999px; background:rgba(255,255,255,.1); }
main.wrap { padding-top:20px; padding-bottom:48px; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit,minmax(165px,1fr)); gap:12px; }
.kpi { background:var(--card); border:1px solid var(--line); border-radius:10px;
  padding:12px 16px; }
.kpi .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.05em; }
.kpi .value { font-size:26px; font-weight:700; line-height:1.25;
  font-variant-numeric:tabular-nums; }
.kpi .sub { color:var(--muted); font-size:12.5px; }
section { background:var(--card); border:1px solid var(--line); border-radius:12px;
  padding:20px 24px 24px; margin-top:20px; }
section > h2 { margin:0 0 14px; font-size:19px; }
h3 { font-size:15px; margin:22px 0 8px; }
h3.set { font-size:17px; padding-top:14px; border-top:1px solid var(--line); }
section > h3.set:nth-of-type(1) { border-top:0; padding-top:0; }
.cols { display:grid; grid-template-columns:minmax(0,1fr) minmax(0,1fr); gap:24px;
  align-items:start; }
table { border-collapse:collapse; width:100%; font-size:13.5px; }
th { text-align:left; font-weight:600; color:var(--muted); font-size:12px;
  text-transform:uppercase; letter-spacing:.04em; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.total td { font-weight:700; border-top:2px solid var(--line); }
dl.facts { display:grid; grid-template-columns:max-content 1fr max-content 1fr; gap:6px 18px;
  margin:0; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; }
.badge { display:inline-block; padding:2px 10px; border-radius:999px; font-size:12px;
  font-weight:600; vertical-align:middle; background:#f1f3f5; color:#495057; }
.badge.Succeeded, .badge.pass, .badge.correct { background:#d3f9d8; color:var(--ok); }
.badge.Failed, .badge.fail { background:#ffe3e3; color:var(--bad); }
.badge.Running, .badge.Generating, .badge.Validating, .badge.Training, .badge.Evaluating
  { background:#dbe4ff; color:var(--accent); }
.badge.reason { background:#fff4e6; color:var(--warn); }
.callout { border-radius:8px; padding:10px 14px; margin:12px 0; font-size:13.5px;
  background:#f1f3f5; border-left:4px solid #adb5bd; }
.callout.bad { background:#fff5f5; border-left-color:var(--bad); }
.callout.note { background:#f3f0ff; border-left-color:#7048e8; }
.timeline { position:relative; height:14px; background:#f1f3f5; border-radius:4px;
  min-width:160px; }
.timeline span { position:absolute; top:0; bottom:0; border-radius:4px; min-width:2px;
  background:var(--accent); }
.timeline span.Failed { background:var(--bad); } .timeline span.Succeeded { background:var(--ok); }
.meter { height:8px; background:#e9ecef; border-radius:4px; overflow:hidden; min-width:80px; }
.meter span { display:block; height:100%; background:var(--accent); }
.meter.big { height:12px; margin:6px 0 2px; }
img.chart { display:block; width:100%; height:auto; margin:6px 0; }
.prediction pre { max-height:12em; overflow:auto; }
pre { margin:0; white-space:pre-wrap; word-break:break-word; background:#f8f9fa;
  border:1px solid var(--line); border-radius:6px; padding:7px 10px;
  font:12.5px/1.45 ui-monospace,"DejaVu Sans Mono",Menlo,monospace; }
.chips { display:flex; flex-wrap:wrap; gap:6px; margin:4px 0 8px; }
.chips span { padding:2px 9px; border-radius:6px; background:#edf2ff; color:#364fc7;
  font-size:12.5px; }
.chips span b { font-weight:600; margin-left:4px; }
.chips.unused span { background:#fff4e6; color:var(--warn); }
.muted { color:var(--muted); }
.id { color:var(--muted); font-size:11.5px; font-weight:400; font-family:ui-monospace,monospace; }
.reason-block { border:1px solid var(--line); border-radius:10px; padding:10px 14px;
  margin:10px 0; }
.reason-block h4 { margin:0 0 6px; font-size:14px; }
.example { display:grid; grid-template-columns:minmax(0,2fr) minmax(0,3fr) minmax(0,2fr);
  gap:12px; padding:8px 0; border-top:1px dashed var(--line); font-size:13px; }
.prediction { border:1px solid var(--line); border-radius:10px; padding:10px 14px;
  margin:10px 0; }
.prediction .q { font-weight:600; margin-bottom:6px; }
.pair { display:grid; grid-template-columns:minmax(0,1fr) minmax(0,1fr); gap:12px; }
.pair .label { font-size:12px; color:var(--muted); margin-bottom:2px; }
.big-number { font-size:40px; font-weight:700; line-height:1.1; }
footer { color:var(--muted); font-size:12px; margin-top:28px; text-align:center; }
"""


# -- formatting -------------------------------------------------------------------------------


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _metric(name: str, value: int | float | None, text: str) -> str:
    """A number from the artifacts: its formatted text, with the exact value for tests."""
    return f'<span data-metric="{_e(name)}" data-value="{_e(json.dumps(value))}">{_e(text)}</span>'


def _count(n: int) -> str:
    return f"{n:,}"


def _usd(x: float) -> str:
    if x == 0:
        return "$0.00"
    return f"${x:,.4f}" if abs(x) < 1 else f"${x:,.2f}"


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _time(stamp: str | None) -> str:
    if not stamp:
        return DASH
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return stamp


def _bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _chart(uri: str | None, alt: str) -> str:
    return f'<img class="chart" alt="{_e(alt)}" src="{uri}">' if uri else ""


def _badge(text: str, kind: str | None = None) -> str:
    return f'<span class="badge {_e(kind or text)}">{_e(text)}</span>'


def _rows(rows: Iterable[Sequence[str]]) -> str:
    """Table rows of already-rendered cells; a cell starting with `<td` is taken as is."""
    out = []
    for row in rows:
        cells = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
        out.append(f"<tr>{cells}</tr>")
    return "".join(out)


def _num(html: str) -> str:
    return f'<td class="num">{html}</td>'


def _meter(fraction: float, big: bool = False) -> str:
    width = max(0.0, min(1.0, fraction)) * 100
    return (
        f'<div class="meter{" big" if big else ""}"><span style="width:{width:.1f}%"></span></div>'
    )


def _chips(items: Iterable[Uses], *, metric: str | None = None) -> str:
    spans = "".join(
        f"<span>{_e(u.name)}<b>"
        + (_metric(f"{metric}:{u.name}", u.count, _count(u.count)) if metric else _count(u.count))
        + "</b></span>"
        for u in items
    )
    return f'<div class="chips">{spans}</div>'


def _unused(names: Sequence[str]) -> str:
    if not names:
        return '<p class="muted">none: every one appears at least once</p>'
    return '<div class="chips unused">' + "".join(f"<span>{_e(n)}</span>" for n in names) + "</div>"


# -- header and overview ------------------------------------------------------------------------


def _summary_line(h: Header) -> str:
    parts = []
    if h.dialect:
        parts.append(h.dialect)
    if h.teacher:
        parts.append(f"teacher {h.teacher}" + (f" ({h.teacher_mode})" if h.teacher_mode else ""))
    if h.student:
        parts.append(f"student {h.student}" + (f" · {h.method}" if h.method else ""))
    if h.hardware_profile:
        parts.append(f"profile {h.hardware_profile}")
    return " · ".join(_e(p) for p in parts)


def _top(report: RunReport) -> str:
    h = report.header
    links = [("run", "Run")]
    for anchor, title, present in (
        ("data", "Data", report.data),
        ("money", "Money", report.money),
        ("training", "Training", report.training),
        ("quality", "Quality", report.quality),
    ):
        if present is not None:
            links.append((anchor, title))
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in links)
    total = seconds_between(h.start, h.end)
    when = ""
    if h.start:
        when = f" · started {_e(_time(h.start))}"
        if h.end:
            when += (
                f", finished {_e(_time(h.end))} ({_metric('run-seconds', total, _duration(total))})"
            )
    return (
        '<header class="top"><div class="wrap">'
        '<div class="eyebrow">DistillRun report</div>'
        f"<h1>{_e(h.name)} {_badge(h.phase)}</h1>"
        f'<div class="summary">{_summary_line(h)}</div>'
        f'<div class="where">{_e(h.namespace + " · " if h.namespace else "")}{_e(h.uri)}{when}'
        "</div>"
        f"<nav>{nav}</nav>"
        "</div></header>"
    )


def _kpi(label: str, value: str, sub: str = "") -> str:
    sub_html = f'<div class="sub">{sub}</div>' if sub else ""
    return (
        f'<div class="kpi"><div class="label">{_e(label)}</div>'
        f'<div class="value">{value}</div>{sub_html}</div>'
    )


def _kpis(report: RunReport) -> str:
    cards = []
    data, money, training, quality = report.data, report.money, report.training, report.quality
    if data is not None:
        target = report.header.target_examples
        cards.append(
            _kpi(
                "Generated",
                _metric("generated", data.generated, _count(data.generated)),
                f"target {_count(target)} accepted" if target else "",
            )
        )
        if data.accepted is not None:
            rate = data.acceptance_rate
            cards.append(
                _kpi(
                    "Accepted",
                    _metric("accepted", data.accepted, _count(data.accepted)),
                    f"{_pct(rate)} of generated" if rate is not None else "",
                )
            )
    if money is not None:
        total = money.total.usd
        budget = money.budget_usd
        cards.append(
            _kpi(
                "Teacher cost",
                _metric("usd-total", total, _usd(total)),
                f"of {_usd(budget)} budget" if budget is not None else "",
            )
        )
        per = money.usd_per_accepted
        if per is not None:
            cards.append(
                _kpi("Per accepted", _metric("usd-per-accepted", per, _usd(per)), "teacher USD")
            )
    if training is not None and training.final_loss is not None:
        cards.append(
            _kpi(
                "Final loss",
                _metric("final-loss", training.final_loss, f"{training.final_loss:.4f}"),
                f"after {_count(training.steps)} steps",
            )
        )
    if quality is not None:
        gate = ""
        if quality.threshold is not None:
            gate = f"gate {_pct(quality.threshold)} · " + (
                _badge("pass") if quality.passed else _badge("fail")
            )
        cards.append(
            _kpi(
                "Execution accuracy",
                _metric(
                    "execution-accuracy",
                    quality.holdout.execution_accuracy,
                    _pct(quality.holdout.execution_accuracy),
                ),
                gate,
            )
        )
    return f'<div class="kpis">{"".join(cards)}</div>' if cards else ""


def _timeline(stage: StageRow, start: str | None, seconds: float | None) -> str:
    offset = seconds_between(start, stage.start)
    if not seconds or offset is None or stage.seconds is None:
        return ""
    left = offset / seconds * 100
    width = stage.seconds / seconds * 100
    return (
        f'<div class="timeline"><span class="{_e(stage.state)}" '
        f'style="left:{left:.2f}%;width:{width:.2f}%"></span></div>'
    )


def _run_section(report: RunReport) -> str:
    h = report.header
    facts = [
        ("Phase", _badge(h.phase)),
        ("Dialect", _e(h.dialect or DASH)),
        ("Teacher", _e(f"{h.teacher} · mode {h.teacher_mode}" if h.teacher else DASH)),
        ("Student", _e(f"{h.student} · {h.method}" if h.student else DASH)),
        (
            "Hardware",
            _e(
                f"{h.hardware_profile} · {h.workers} worker(s) {TIMES} {h.gpus_per_worker} GPU"
                if h.hardware_profile
                else DASH
            ),
        ),
        (
            "Target",
            _e(f"{_count(h.target_examples)} accepted examples" if h.target_examples else DASH),
        ),
        (
            "Budget",
            _metric("budget-usd", h.budget_usd, _usd(h.budget_usd)) if h.budget_usd else DASH,
        ),
        (
            "Accuracy gate",
            _e(_pct(h.min_accuracy)) if h.min_accuracy is not None else DASH,
        ),
    ]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts)
    failure = (
        f'<div class="callout bad"><b>The run failed.</b> {_e(h.failure)}</div>'
        if h.failure
        else ""
    )
    problems = "".join(
        f'<div class="callout bad"><b>Unreadable artifact.</b> {_e(p)}</div>'
        for p in report.problems
    )
    total = seconds_between(h.start, h.end or max((s.end for s in h.stages if s.end), default=None))
    stage_rows = _rows(
        (
            _e(s.name),
            _badge(s.state),
            _e(_time(s.start)),
            _e(_time(s.end)),
            _num(_metric(f"stage-seconds:{s.name}", s.seconds, _duration(s.seconds))),
            _timeline(s, h.start, total),
            _num(_count(s.attempts)),
            _e(s.message),
        )
        for s in h.stages
    )
    stages = (
        "<table><tr><th>Stage</th><th>State</th><th>Started</th><th>Finished</th>"
        f'<th class="num">Duration</th><th>Timeline</th><th class="num">Attempts</th>'
        f"<th>Message</th></tr>{stage_rows}</table>"
        if h.stages
        else '<p class="muted">No stage has started yet.</p>'
    )
    return (
        '<section id="run"><h2>Run</h2>'
        f"{failure}{problems}"
        f'<dl class="facts">{dl}</dl>'
        f"<h3>Stages</h3>{stages}</section>"
    )


# -- data ---------------------------------------------------------------------------------------


def _examples(group: ReasonGroup, metric_prefix: str) -> str:
    items = "".join(
        '<div class="example">'
        f"<div>{_e(x.question) or '<span class=muted>(no question)</span>'}"
        f'<div class="id">{_e(x.id)}</div></div>'
        f"<div><pre>{_e(x.sql) or DASH}</pre></div>"
        f'<div class="muted">{_e(x.message)}</div>'
        "</div>"
        for x in group.examples
    )
    shown = len(group.examples)
    more = f" · {shown} shown" if shown < group.count else ""
    return (
        '<div class="reason-block">'
        f"<h4>{_badge(group.reason, 'reason')} "
        f"{_metric(f'{metric_prefix}:{group.reason}', group.count, _count(group.count))} "
        f"example(s){_e(more)}</h4>{items}</div>"
    )


def _coverage(c: Coverage) -> str:
    parts = [f"<h3>Coverage of the schema by {_count(c.examples)} accepted queries</h3>"]
    if c.schema_note:
        parts.append(
            f'<div class="callout note">Which tables, columns and joins never appear needs the '
            f"schema's DDL: {_e(c.schema_note)}.</div>"
        )
    if c.unparsed:
        parts.append(
            f'<p class="muted">{_count(c.unparsed)} accepted queries could not be parsed for '
            "this analysis and are not counted.</p>"
        )
    table_rows = []
    most = max((u.count for u in c.tables), default=0) or 1
    used_in: Counter[str] = Counter(u.name.split(".")[0] for u in c.columns or ())
    unused_in: Counter[str] = Counter(n.split(".")[0] for n in c.unused_columns or ())

    def columns(table: str) -> str:
        if c.columns is None:
            return DASH
        return f"{used_in[table]} of {used_in[table] + unused_in[table]}"

    for u in c.tables:
        table_rows.append(
            (
                _e(u.name),
                _num(_metric(f"table-uses:{u.name}", u.count, _count(u.count))),
                _meter(u.count / most),
                _num(columns(u.name)),
            )
        )
    for name in c.unused_tables or ():
        table_rows.append((_e(name), _num("0"), _meter(0), _num(columns(name))))
    parts.append(
        '<div class="cols"><div>'
        '<table><tr><th>Table</th><th class="num">Queries</th><th></th>'
        f'<th class="num">Columns used</th></tr>{_rows(table_rows)}</table>'
    )
    if c.unused_tables is not None:
        parts.append(f"<h3>Tables never used</h3>{_unused(c.unused_tables)}")
    parts.append("</div><div>")
    parts.append(
        f'<h3 style="margin-top:0">SQL constructs</h3>{_chips(c.constructs, metric="construct")}'
    )
    parts.append(f"<h3>Constructs never used</h3>{_unused(c.unused_constructs)}")
    parts.append("</div></div>")
    join_title = "Joins" if c.schema_columns is not None else "Joins (where columns are qualified)"
    join_rows = _rows((_e(u.name), _num(_count(u.count))) for u in c.joins)
    parts.append('<div class="cols"><div>')
    parts.append(
        f"<h3>{join_title}</h3>"
        + (
            f'<table><tr><th>Equality join</th><th class="num">Queries</th></tr>{join_rows}</table>'
            if c.joins
            else '<p class="muted">No query joins two tables on equal columns.</p>'
        )
    )
    if c.unused_joins is not None:
        parts.append(f"<h3>Foreign-key joins never used</h3>{_unused(c.unused_joins)}")
    parts.append("</div><div>")
    if c.columns is not None and c.unused_columns is not None and c.schema_columns:
        used = c.schema_columns - len(c.unused_columns)
        parts.append(
            f"<h3>Columns: {_metric('columns-used', used, _count(used))} of "
            f"{_count(c.schema_columns)} used</h3>"
            f"{_meter(used / c.schema_columns, big=True)}"
            f"<h3>Columns never used</h3>{_unused(c.unused_columns)}"
        )
        if c.unplaced:
            parts.append(
                f'<p class="muted">{_count(c.unplaced)} queries whose columns could not be '
                "placed in tables are left out of the column and join counts.</p>"
            )
    parts.append("</div></div>")
    return "".join(parts)


def _data_section(data: Data, header: Header) -> str:
    counts = [
        (
            "Shards committed",
            _metric("shards", data.shards_committed, _count(data.shards_committed))
            + (f" of {_count(data.shards_planned)}" if data.shards_planned else ""),
        ),
        ("Generated by the teacher", _metric("generated", data.generated, _count(data.generated))),
    ]
    dropped = sum(g.count for g in data.teacher_dropped)
    if dropped:
        counts.append(
            (
                "Dropped by the teacher's reader",
                _metric("teacher-dropped", dropped, _count(dropped)),
            )
        )
    if data.validated and data.accepted is not None:
        counts.append(("Accepted", _metric("accepted", data.accepted, _count(data.accepted))))
        counts.append(
            ("Rejected", _metric("rejected", data.rejected_total, _count(data.rejected_total)))
        )
        if data.train is not None:
            counts.append(("Train split", _metric("train", data.train, _count(data.train))))
        if data.holdout is not None:
            counts.append(("Holdout split", _metric("holdout", data.holdout, _count(data.holdout))))
    else:
        counts.append(("Validation", '<span class="muted">not finished yet</span>'))
    table = "<table>" + _rows((_e(k), _num(v)) for k, v in counts) + "</table>"
    target = header.target_examples
    progress = ""
    if target and data.accepted is not None:
        progress = (
            f'<p class="muted">{_pct(data.accepted / target)} of the target of '
            f"{_count(target)} accepted examples</p>{_meter(data.accepted / target, big=True)}"
        )
    parts = [
        '<section id="data"><h2>Data</h2>',
        f'<div class="cols"><div>{table}{progress}</div>',
        f"<div>{_chart(plots.shards_chart(data), 'Examples per shard')}</div></div>",
        *(f'<div class="callout bad">{_e(w)}.</div>' for w in data.warnings),
    ]
    if data.rejected:
        chart = _chart(plots.reasons_chart(data.rejected, "Rejected by reason"), "Rejected")
        parts.append(
            "<h3>Why examples were rejected</h3>"
            f'<div class="cols"><div>{chart}</div>'
            '<div class="muted">Each rejected example keeps its reason class and the checker\'s '
            "or the database engine's own message; a few of each follow.</div></div>"
        )
        parts.extend(_examples(g, "rejected") for g in data.rejected)
    if data.teacher_dropped:
        parts.append("<h3>Dropped before validation</h3>")
        parts.extend(_examples(g, "teacher-dropped") for g in data.teacher_dropped)
    if data.coverage is not None:
        parts.append(_coverage(data.coverage))
    parts.append("</section>")
    return "".join(parts)


# -- money --------------------------------------------------------------------------------------


def _spend_row(s: StageSpend, css: str = "") -> str:
    prefix = "total" if s.stage == "total" else f"stage:{s.stage}"
    cells = "".join(
        _num(_metric(f"{key}:{prefix}", value, _count(value)))
        for key, value in (
            ("requests", s.requests),
            ("tokens-input", s.input_tokens),
            ("tokens-output", s.output_tokens),
            ("tokens-cache-read", s.cache_read_tokens),
            ("tokens-cache-write", s.cache_write_tokens),
        )
    )
    usd = _num(_metric(f"usd:{prefix}", s.usd, _usd(s.usd)))
    return f'<tr class="{css}"><td>{_e(s.stage)}</td>{cells}{usd}</tr>'


def _money_section(money: Money) -> str:
    total = money.total
    body = "".join(_spend_row(s) for s in money.by_stage) + _spend_row(total, "total")
    table = (
        '<table><tr><th>Stage</th><th class="num">Requests</th><th class="num">Input tokens</th>'
        '<th class="num">Output tokens</th><th class="num">Cache read</th>'
        f'<th class="num">Cache write</th><th class="num">USD</th></tr>{body}</table>'
    )
    budget = ""
    if money.budget_usd:
        share = total.usd / money.budget_usd
        budget = (
            f"<p>Spent {_usd(total.usd)} of the {_usd(money.budget_usd)} budget "
            f"({_pct(share)}).</p>{_meter(share, big=True)}"
        )
    per = money.usd_per_accepted
    per_line = (
        f"<p>Cost per accepted example: {_usd(per)} ({_count(money.accepted or 0)} accepted).</p>"
        if per is not None
        else ""
    )
    free = (
        '<div class="callout">The teacher reported no tokens and no cost for this run.</div>'
        if not total.usd and not total.input_tokens and not total.output_tokens
        else ""
    )
    stages = ", ".join(s.stage for s in money.by_stage)
    mode = f" The teacher was called in {_e(money.mode)} mode." if money.mode else ""
    return (
        '<section id="money"><h2>Money</h2>'
        f'<p class="muted">Paid API spend as the stages recorded it (stages with a record: '
        f"{_e(stages)}).{mode}</p>{table}{free}"
        f'<div class="cols"><div>{budget}{per_line}</div>'
        f"<div>{_chart(plots.spend_chart(money), 'Teacher spend')}</div></div></section>"
    )


# -- training -----------------------------------------------------------------------------------


def _training_section(t: Training, header: Header) -> str:
    rows: list[tuple[str, str]] = [
        ("Optimizer steps", _metric("train-steps", t.steps, _count(t.steps)))
    ]
    if t.epochs is not None:
        rows.append(("Epochs", _count(t.epochs)))
    if t.examples is not None:
        truncated = f" ({_count(t.examples_truncated)} truncated)" if t.examples_truncated else ""
        rows.append(
            (
                "Training examples",
                _metric("train-examples", t.examples, _count(t.examples)) + _e(truncated),
            )
        )
    if t.resumed_from_step:
        rows.append(("Resumed from step", _count(t.resumed_from_step)))
    if t.final_loss is not None:
        rows.append(("Final loss", _metric("final-loss", t.final_loss, f"{t.final_loss:.4f}")))
    if t.train_loss is not None:
        rows.append(
            ("Mean training loss", _metric("train-loss", t.train_loss, f"{t.train_loss:.4f}"))
        )
    if t.runtime_s is not None:
        rows.append(
            ("Training time", _metric("train-runtime-s", t.runtime_s, _duration(t.runtime_s)))
        )
    if t.steps_per_second is not None:
        rows.append(("Throughput", f"{t.steps_per_second:.2f} steps/s"))
    if t.tokens_per_second is not None:
        rows.append(
            (
                "Throughput (tokens)",
                _metric(
                    "tokens-per-second", t.tokens_per_second, f"{t.tokens_per_second:,.0f} tokens/s"
                ),
            )
        )
    if t.gpu_memory_peak_bytes is not None:
        rows.append(
            (
                "GPU memory (peak)",
                _metric(
                    "gpu-memory-peak-bytes",
                    t.gpu_memory_peak_bytes,
                    _bytes(t.gpu_memory_peak_bytes),
                ),
            )
        )
    if t.memory_estimate_bytes is not None:
        budget = f" of {_bytes(t.memory_budget_bytes)}" if t.memory_budget_bytes else ""
        rows.append(
            (
                "Memory per process (planned estimate)",
                _metric(
                    "memory-estimate-bytes",
                    t.memory_estimate_bytes,
                    f"{_bytes(t.memory_estimate_bytes)}{budget}",
                ),
            )
        )
    if t.base_model:
        rows.append(("Base model", _e(t.base_model)))
    if t.method:
        rows.append(("Method", _e(t.method)))
    if t.hardware_profile:
        workers = (
            f" · {header.workers} worker(s) {TIMES} {header.gpus_per_worker} GPU"
            if header.workers is not None
            else ""
        )
        rows.append(("Hardware profile", _e(t.hardware_profile + workers)))
    table = "<table>" + _rows((_e(k), v) for k, v in rows) + "</table>"
    plan = ""
    if t.plan:
        facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in t.plan)
        notes = "".join(f"<li>{_e(n)}</li>" for n in t.plan_notes)
        plan = f'<h3>Training plan</h3><dl class="facts">{facts}</dl>' + (
            f"<ul>{notes}</ul>" if notes else ""
        )
    sample = plots.sample_accuracy_chart(t)
    return (
        '<section id="training"><h2>Training</h2>'
        f'<div class="cols"><div>{_chart(plots.loss_chart(t), "Loss and learning rate")}'
        f"{_chart(sample, 'Sample accuracy during training')}</div>"
        f"<div>{table}{plan}</div></div></section>"
    )


# -- quality ------------------------------------------------------------------------------------


def _printable(text: str) -> str:
    """`text` with control characters (a weak student writes them) shown as U+FFFD."""
    return "".join(
        "\N{REPLACEMENT CHARACTER}" if unicodedata.category(ch) == "Cc" and ch not in "\n\t" else ch
        for ch in text
    )


def _prediction(p: Prediction) -> str:
    if p.predicted_sql is not None:
        predicted = f"<pre>{_e(_printable(p.predicted_sql))}</pre>"
    else:
        answer = p.answer[:ANSWER_CHARS] + ("…" if len(p.answer) > ANSWER_CHARS else "")
        predicted = (
            '<div class="label">(no SQL in the answer; the student wrote:)</div>'
            f"<pre>{_e(_printable(answer)) or '(nothing)'}</pre>"
        )
    results = ""
    if p.gold_result is not None or p.predicted_result is not None:
        results = (
            '<div class="pair" style="margin-top:8px">'
            f'<div><div class="label">Gold result</div><pre>{_e(p.gold_result or DASH)}</pre></div>'
            f'<div><div class="label">Predicted result</div>'
            f"<pre>{_e(p.predicted_result or DASH)}</pre></div></div>"
        )
    return (
        '<div class="prediction">'
        f'<div class="q">{_e(p.question)} <span class="id">{_e(p.id)}</span></div>'
        '<div class="pair">'
        f'<div><div class="label">Gold SQL</div><pre>{_e(p.gold_sql)}</pre></div>'
        f'<div><div class="label">Predicted SQL</div>{predicted}</div></div>'
        f"{results}"
        f'<div style="margin-top:6px">{_badge(p.outcome, "reason")} '
        f'<span class="muted">{_e(p.message)}</span></div></div>'
    )


def _accuracy_table(rows: Sequence[Accuracy], kind: str, prefix: str) -> str:
    body = _rows(
        (
            _e(r.name),
            _num(_metric(f"{prefix}{kind}-correct:{r.name}", r.correct, _count(r.correct))),
            _num(_metric(f"{prefix}{kind}-scored:{r.name}", r.scored, _count(r.scored))),
            _num(_pct(r.rate)),
        )
        for r in rows
    )
    return (
        f'<table><tr><th>{_e(kind.title())}</th><th class="num">Correct</th>'
        f'<th class="num">Scored</th><th class="num">Accuracy</th></tr>{body}</table>'
    )


def _scores(s: Scores, prefix: str, gate: str) -> str:
    """One evaluation set; `prefix` keeps its metric names apart from the other set's."""
    title = s.name.capitalize()
    rate = s.execution_accuracy
    headline = (
        f'<div class="big-number">'
        f"{_metric(f'{prefix}execution-accuracy', rate, _pct(rate))}"
        f"</div><p>execution accuracy on the {_e(s.name)}: "
        f"{_metric(f'{prefix}eval-correct', s.correct, _count(s.correct))} correct of "
        f"{_metric(f'{prefix}eval-scored', s.scored, _count(s.scored))} scored "
        f"({_metric(f'{prefix}eval-examples', s.examples, _count(s.examples))} examples; "
        f"{_e(s.comparison)} comparison)</p>"
        f"<p>counted apart, never correct: "
        f"{_metric(f'{prefix}eval-unjudgeable', s.unjudgeable, _count(s.unjudgeable))} "
        "unjudgeable (results too long to compare whole), "
        f"{_metric(f'{prefix}eval-gold-empty', s.gold_empty, _count(s.gold_empty))} "
        "with an empty gold result</p>"
        f"{_meter(s.execution_accuracy, big=True)}{gate}"
    )
    warnings = "".join(f'<div class="callout bad">{_e(w)}.</div>' for w in s.warnings)
    outcomes = _chart(plots.outcomes_chart(s.outcomes), f"{title} predictions by outcome")
    parts = [
        f"<h3>{_e(title)}</h3>",
        f'<div class="cols"><div>{headline}</div><div>{outcomes}</div></div>',
        warnings,
    ]
    if s.by_construct or s.by_table:
        by_construct = plots.accuracy_chart(s.by_construct, "By construct")
        by_table = plots.accuracy_chart(s.by_table, "By table")
        parts.append(
            f"<h3>{_e(title)}: accuracy by SQL construct and by table (of the gold query)</h3>"
            f'<div class="cols"><div>{_chart(by_construct, f"{title} accuracy by construct")}'
            f"{_accuracy_table(s.by_construct, 'construct', prefix)}</div>"
            f"<div>{_chart(by_table, f'{title} accuracy by table')}"
            f"{_accuracy_table(s.by_table, 'table', prefix)}</div></div>"
        )
    if s.wrong:
        parts.append(
            f"<h3>{_e(title)}: wrong predictions ({len(s.wrong)} of "
            f"{_metric(f'{prefix}wrong-total', s.wrong_total, _count(s.wrong_total))})</h3>"
        )
        parts.extend(_prediction(p) for p in s.wrong)
    return "".join(parts)


def _comparison(q: Quality) -> str:
    """The student beside the base before training (what distillation bought) and the teacher,
    on the same questions."""
    gold = q.gold_set is not None

    def cells(name: str, slug: str, holdout: Accuracy, gold_set: Accuracy | None) -> str:
        row = f"<td>{_e(name)}</td>" + _num(
            _metric(f"{slug}-holdout-accuracy", holdout.rate, _pct(holdout.rate))
            + f" ({holdout.correct:,}/{holdout.scored:,})"
        )
        if gold:
            row += _num(
                _metric(f"{slug}-gold-accuracy", gold_set.rate, _pct(gold_set.rate))
                + f" ({gold_set.correct:,}/{gold_set.scored:,})"
                if gold_set is not None
                else "—"
            )
        return row

    student = cells(
        "student (trained)",
        "student",
        Accuracy("holdout", q.holdout.correct, q.holdout.scored),
        Accuracy("gold", q.gold_set.correct, q.gold_set.scored) if q.gold_set else None,
    )
    rows = [f"<tr>{student}{_num('')}</tr>"]
    for c in q.contenders:
        slug = c.name.split()[0]
        name = f"{c.name} ({c.model})" if c.model else c.name
        if c.usd:
            name += f", cost ${c.usd:.2f}"
        points = q.points_over(c)
        rows.append(
            f"<tr>{cells(name, slug, c.holdout, c.gold_set)}"
            f"{_num(_metric(f'points-over-{slug}', round(points, 1), f'{points:+.1f}'))}</tr>"
        )
    head = (
        '<tr><th>Model</th><th class="num">Holdout</th>'
        + ('<th class="num">Gold set</th>' if gold else "")
        + '<th class="num">Student ahead by (points, holdout)</th></tr>'
    )
    return (
        "<h3>Before and after: execution accuracy on the same questions</h3>"
        f"<table>{head}{''.join(rows)}</table>"
    )


def _quality_section(q: Quality) -> str:
    gate = ""
    if q.threshold is not None:
        verdict = _badge("pass") if q.passed else _badge("fail")
        gate = (
            f"<p>Gate: at least {_metric('accuracy-threshold', q.threshold, _pct(q.threshold))} "
            f"(spec.evaluation.minExecutionAccuracy) {verdict}</p>"
        )
    parts = ['<section id="quality"><h2>Quality</h2>']
    if q.contenders:
        parts.append(_comparison(q))
    parts.append(_scores(q.holdout, "", gate))
    if q.gold_set is not None:
        parts.append(_scores(q.gold_set, "gold-", ""))
    if q.gold_set_note:
        parts.append(f'<div class="callout note">{_e(q.gold_set_note)}.</div>')
    parts.append("</section>")
    return "".join(parts)


# -- the page -----------------------------------------------------------------------------------


def render_page(report: RunReport) -> str:
    """The whole report page for `report`."""
    body = [_top(report), '<main class="wrap">', _kpis(report), _run_section(report)]
    if report.data is not None:
        body.append(_data_section(report.data, report.header))
    if report.money is not None:
        body.append(_money_section(report.money))
    if report.training is not None:
        body.append(_training_section(report.training, report.header))
    if report.quality is not None:
        body.append(_quality_section(report.quality))
    body.append(
        f"<footer>Built by distillrun {_e(__version__)} from the artifacts at "
        f"{_e(report.header.uri)}. Rebuild with <code>distillrun report "
        f"{_e(report.header.uri)}</code>.</footer></main>"
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light">'
        f"<title>{_e(report.header.name)} · DistillRun report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
