"""The report page of a finished shop-tiny run: written by the run, every section whose data
exists, the same numbers as the artifacts, self-contained, and clean in a real browser."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat

from distillrun.api import layout
from distillrun.cli import main
from distillrun.local.summary import render_summary
from distillrun.report.build import REPORT_KEY
from distillrun.store import Store
from tests.unit.report.conftest import GOLD_SET, FinishedRun, PageLoad


class _Page(HTMLParser):
    """Collects what the tests look at: metrics, section ids, images, scripts, links."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, list[tuple[Any, str]]] = defaultdict(list)
        self.sections: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self.links: list[str] = []
        self._open: list[tuple[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section" and found.get("id"):
            self.sections.append(str(found["id"]))
        if tag == "img":
            self.images.append(str(found.get("src")))
        if tag == "script":
            self.scripts += 1
        if tag in ("a", "link") and found.get("href"):
            self.links.append(str(found["href"]))
        if "data-metric" in found:
            self._open.append((str(found["data-metric"]), json.loads(str(found["data-value"]))))

    def handle_data(self, data: str) -> None:
        if self._open:
            name, value = self._open.pop()
            self.metrics[name].append((value, data))


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def page_of(store: Store) -> tuple[str, _Page]:
    html = store.get_bytes(REPORT_KEY).decode()
    return html, parse(html)


def the(page: _Page, name: str) -> Any:
    """The one value of metric `name` (it may be shown several times, always the same)."""
    values = {json.dumps(value) for value, _ in page.metrics[name]}
    assert len(values) == 1, f"{name}: {page.metrics[name]}"
    return page.metrics[name][0][0]


def test_the_run_writes_its_report_and_says_where(finished_run: FinishedRun) -> None:
    store, outcome = finished_run.store, finished_run.outcome
    uri = store.url(REPORT_KEY)
    assert outcome.status.artifacts.report == uri
    assert store.get_json("status.json")["artifacts"]["report"] == uri
    assert f"report: {uri}" in render_summary(outcome)
    assert outcome.report_problem is None


def test_every_section_with_data_is_present(finished_run: FinishedRun) -> None:
    html, page = page_of(finished_run.store)
    assert page.sections == ["run", "data", "money", "training", "quality"]
    for heading in (
        "Stages",
        "Coverage of the schema",
        "Tables never used",
        "Constructs never used",
        "Foreign-key joins never used",
        "Columns never used",
        "Holdout: accuracy by SQL construct and by table",
        "Holdout: wrong predictions",
        "Gold set: accuracy by SQL construct and by table",
        "Training plan",
        "Before and after: execution accuracy on the same questions",
    ):
        assert heading in html, heading
    for chart in (
        "Examples per shard",
        "Loss and learning rate",
        "Sample accuracy during training",
        "Holdout predictions by outcome",
        "Holdout accuracy by construct",
        "Holdout accuracy by table",
        "Gold set predictions by outcome",
    ):
        assert f'alt="{chart}"' in html, chart
    # the teacher is free: no spend chart over a flat zero line
    assert 'alt="Teacher spend"' not in html
    assert "The teacher reported no tokens and no cost" in html


def test_numbers_in_the_page_equal_the_artifacts(finished_run: FinishedRun) -> None:
    store = finished_run.store
    _, page = page_of(store)
    manifest = store.get_json("generate/_manifest.json")
    accepted = store.read_jsonl("validate/accepted.jsonl")
    rejected = Counter(r["verdict"]["reason"] for r in store.read_jsonl("validate/rejected.jsonl"))
    split = store.get_json("validate/_done.json")["summary"]
    trained = store.get_json("train/metrics.json")
    scored = store.get_json("evaluate/metrics.json")
    base = scored["base"]
    spec = store.get_json("spec.json")["spec"]
    status = store.get_json("status.json")

    expected: dict[str, Any] = {
        "shards": manifest["shards"],
        "generated": manifest["generated"],
        "accepted": len(accepted),
        "rejected": sum(rejected.values()),
        "train": split["train"],
        "holdout": split["holdout"],
        "requests:total": manifest["usage"]["requests"],
        "tokens-input:total": manifest["usage"]["input_tokens"],
        "tokens-output:total": manifest["usage"]["output_tokens"],
        "tokens-cache-read:total": manifest["usage"]["cache_read_tokens"],
        "tokens-cache-write:total": manifest["usage"]["cache_write_tokens"],
        "usd:total": manifest["usage"]["usd"],
        "usd:stage:generate": manifest["usage"]["usd"],
        "usd-total": manifest["usage"]["usd"],
        "usd-per-accepted": manifest["usage"]["usd"] / len(accepted),
        "budget-usd": spec["teacher"]["budget"]["maxUSD"],
        "train-steps": trained["steps"],
        "train-examples": trained["examples"],
        "final-loss": trained["final_loss"],
        "train-loss": trained["train_loss"],
        "train-runtime-s": trained["runtime_s"],
        "execution-accuracy": scored["execution_accuracy"],
        "eval-correct": scored["correct"],
        "eval-scored": scored["scored"],
        "eval-examples": scored["examples"],
        "eval-unjudgeable": scored["unjudgeable"],
        "eval-gold-empty": scored["gold_empty"],
        "gold-eval-unjudgeable": scored["gold_set"]["unjudgeable"],
        "gold-eval-gold-empty": scored["gold_set"]["gold_empty"],
        "accuracy-threshold": spec["evaluation"]["minExecutionAccuracy"],
        "wrong-total": scored["scored"] - scored["correct"],
        "gold-execution-accuracy": scored["gold_set"]["execution_accuracy"],
        "gold-eval-correct": scored["gold_set"]["correct"],
        "gold-eval-scored": scored["gold_set"]["scored"],
        "gold-eval-examples": len(GOLD_SET),
        # the base before training, on the same questions, and what training bought
        "student-holdout-accuracy": scored["correct"] / scored["scored"],
        "base-holdout-accuracy": base["holdout"]["correct"] / base["holdout"]["scored"],
        "base-gold-accuracy": base["gold_set"]["correct"] / base["gold_set"]["scored"],
        "points-over-base": round(
            100 * scored["correct"] / scored["scored"]
            - 100 * base["holdout"]["correct"] / base["holdout"]["scored"],
            1,
        ),
    }
    expected.update({f"rejected:{reason}": n for reason, n in rejected.items()})
    if (trained.get("plan") or {}).get("memory"):
        expected["memory-estimate-bytes"] = trained["plan"]["memory"]["total"]
    for name, stage in status["stages"].items():
        start = datetime.fromisoformat(stage["startTime"])
        end = datetime.fromisoformat(stage["completionTime"])
        expected[f"stage-seconds:{name}"] = (end - start).total_seconds()
    assert status["counts"]["rejected"] == dict(rejected)

    for name, value in expected.items():
        assert the(page, name) == value, name
    for name, shown in page.metrics.items():
        for value, text in shown:
            if isinstance(value, int) and not name.endswith("-bytes"):  # counts, shown whole
                assert text.replace(",", "") == str(value), (name, text)


def test_the_page_is_one_self_contained_file(finished_run: FinishedRun) -> None:
    html, page = page_of(finished_run.store)
    assert page.scripts == 0
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert all(link.startswith("#") for link in page.links)
    assert page.images
    for image in page.images:
        prefix = "data:image/svg+xml;base64,"
        assert image.startswith(prefix)
        root = ET.fromstring(base64.b64decode(image.removeprefix(prefix)))
        assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_the_page_opens_in_chromium_without_console_errors_and_is_not_blank(
    finished_run: FinishedRun, open_page: Callable[[Path], PageLoad]
) -> None:
    loaded = open_page(finished_run.root / REPORT_KEY)
    assert loaded.console == []
    image = Image.open(loaded.screenshot).convert("L")
    assert image.size == (1280, 2000)
    assert ImageStat.Stat(image).stddev[0] > 20, "the screenshot is (nearly) blank"
    assert len(image.getcolors(maxcolors=1 << 16) or []) > 50


def test_the_console_check_sees_a_page_that_reaches_out(
    tmp_path: Path, open_page: Callable[[Path], PageLoad]
) -> None:
    """The browser check above would pass vacuously if console messages went unseen."""
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!doctype html><html><head><meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'\"></head><body>"
        '<img src="https://example.invalid/x.png"></body></html>'
    )
    assert open_page(broken).console


def test_rejected_examples_are_shown_with_their_reason_and_message(
    run_copy: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """The synthetic teacher's examples are all accepted now, so the session's run has no
    rejects: two are added to its validate output and the page is rebuilt from it."""
    rejected = [
        {
            "id": f"r{n}",
            "question": f"Which orders are in the table odrers {n}?",
            "sql": "SELECT * FROM odrers",
            "verdict": {"ok": False, "reason": "unknown_table", "message": "no table odrers"},
        }
        for n in range(2)
    ]
    run_copy.put_jsonl(layout.REJECTED_KEY, rejected)
    run_copy.delete(REPORT_KEY)
    assert main(["report", run_copy.url()]) == 0
    capsys.readouterr()
    html, _ = page_of(run_copy)
    assert "Why examples were rejected" in html and 'alt="Rejected"' in html
    assert "unknown_table" in html and "no table odrers" in html


def test_report_rebuilds_from_the_artifacts_and_status_prints_the_same_numbers(
    run_copy: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    run_copy.delete(REPORT_KEY)
    assert main(["report", run_copy.url()]) == 0
    assert f"report: {run_copy.url(REPORT_KEY)}" in capsys.readouterr().out
    _, page = page_of(run_copy)

    assert main(["status", run_copy.url()]) == 0
    out = capsys.readouterr().out
    assert "shop-tiny: Succeeded" in out
    for stage in ("generate", "validate", "train", "evaluate"):
        assert stage in out
    accepted, generated = the(page, "accepted"), the(page, "generated")
    assert f"{accepted} ({accepted / generated:.1%})" in out
    assert f"{the(page, 'execution-accuracy'):.1%}" in out
    assert f"({the(page, 'eval-correct')}/{the(page, 'eval-scored')})" in out
    assert f"{the(page, 'final-loss'):.4f}" in out
    before = the(page, "base-holdout-accuracy")
    assert re.search(rf"base model, before training\W+{re.escape(f'{before:.1%}')}", out)
    ahead = re.escape(f"{the(page, 'points-over-base'):+.1f} points")
    assert re.search(rf"student ahead by\W+{ahead}", out)
    for reason in (name.split(":", 1)[1] for name in page.metrics if name.startswith("rejected:")):
        assert re.search(rf"{reason}\s.*\b{the(page, f'rejected:{reason}')}\b", out)


def test_report_and_status_refuse_a_uri_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("report", "status"):
        assert main([command, str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert "no DistillRun artifacts here" in err and "Traceback" not in err
