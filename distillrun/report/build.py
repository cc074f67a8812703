"""Writing a run's report page into its store, next to the artifacts it describes."""

from __future__ import annotations

from distillrun.api.layout import REPORT_KEY
from distillrun.report.page import render_page
from distillrun.report.read import read_run
from distillrun.sql.schema import SchemaInfo
from distillrun.store import Store


def build_report(store: Store, *, schema: SchemaInfo | None = None) -> str:
    """Reads the run under `store`, writes `report.html` there and returns its URI.

    Rebuilding overwrites the page: it is derived from the artifacts alone, so the newest
    rendering is always the right one. `schema` is the run's parsed schema when the caller has
    it (see `read_run`)."""
    page = render_page(read_run(store, schema=schema))
    store.put_bytes(REPORT_KEY, page.encode("utf-8"))
    return store.url(REPORT_KEY)
