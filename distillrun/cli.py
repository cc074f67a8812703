"""The `distillrun` command.

  distillrun run MANIFEST [--store URI]   every stage on this machine, on a local Ray
  distillrun validate MANIFEST...         check manifests; exit 1 naming each bad field
  distillrun crd                          print the DistillRun CRD
  distillrun report RUN-URI               (re)build a run's report.html from its artifacts
  distillrun status RUN-URI               a run's numbers as tables, while it runs too
  distillrun sql check|compare ...        the run's SQL validator on your own queries

User mistakes (a bad manifest, an unreadable file, an unreachable store) end with a message and
exit status 1, never a traceback; exit status 2 is for a wrong command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from distillrun import __version__
from distillrun.api.errors import ManifestError
from distillrun.api.resource import load_run

INTERRUPTED_EXIT = 130
"""A run stopped by Ctrl-C exits as a shell reports a process ended by SIGINT."""


def _validate(args: argparse.Namespace, out: Console, err: Console) -> int:
    from distillrun.jobs.empty_results import empty_seed_warnings
    from distillrun.jobs.inputs import load_inputs
    from distillrun.local.preflight import check_local_run

    failed = 0
    for manifest in args.manifests:
        path = Path(manifest)
        try:
            run = load_run(path)
            schema, seed_sql = load_inputs(run, path.parent, manifest)
            if not args.cluster:
                check_local_run(run, schema, path.parent, manifest)
        except ManifestError as exc:
            failed += 1
            err.print(str(exc), highlight=False, markup=False)
            continue
        out.print(f"{manifest}: valid DistillRun {run.metadata.name}", highlight=False)
        for warning in empty_seed_warnings(seed_sql):
            err.print(f"{manifest}: warning: {warning}", highlight=False, markup=False)
    return 1 if failed else 0


def _run(args: argparse.Namespace, out: Console, err: Console) -> int:
    from distillrun.local.progress import TerminalProgress
    from distillrun.local.runner import run_manifest
    from distillrun.local.summary import render_summary
    from distillrun.store import StoreError

    try:
        with TerminalProgress(out) as progress:
            outcome = run_manifest(
                Path(args.manifest),
                args.store,
                progress,
                use_ray=not args.no_ray,
                accept_estimate=args.accept_estimate,
            )
    except ManifestError as exc:
        err.print(str(exc), highlight=False, markup=False)
        return 1
    except StoreError as exc:
        err.print(f"artifact store: {exc}", highlight=False, markup=False)
        return 1
    except KeyboardInterrupt:
        err.print(
            "interrupted (Ctrl-C); run the same command again to resume from what was committed",
            highlight=False,
        )
        return INTERRUPTED_EXIT
    out.print(render_summary(outcome), highlight=False)
    if outcome.failure is not None and outcome.interrupted:
        err.print(
            f"interrupted during {outcome.failure.stage}: status and report are written; run "
            "the same command again to resume",
            highlight=False,
            markup=False,
        )
        return INTERRUPTED_EXIT
    if outcome.failure is not None:
        err.print(f"run failed: {outcome.failure}", highlight=False, markup=False)
        return 1
    return 0


def _crd(args: argparse.Namespace, out: Console, err: Console) -> int:
    from distillrun.api.crd import render_crd

    sys.stdout.write(render_crd())
    return 0


def _report(args: argparse.Namespace, out: Console, err: Console) -> int:
    from distillrun.report.build import build_report
    from distillrun.store import StoreError, open_store

    try:
        uri = build_report(open_store(args.run))
    except StoreError as exc:
        err.print(f"report: {exc}", highlight=False, markup=False)
        return 1
    out.print(f"report: {uri}", highlight=False, markup=False)
    return 0


def _status(args: argparse.Namespace, out: Console, err: Console) -> int:
    from datetime import UTC, datetime

    from distillrun.report.read import read_run
    from distillrun.report.terminal import render_status
    from distillrun.store import StoreError, open_store

    try:
        report = read_run(open_store(args.run), with_coverage=False)
    except StoreError as exc:
        err.print(f"status: {exc}", highlight=False, markup=False)
        return 1
    out.print(render_status(report, datetime.now(UTC)), highlight=False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distillrun",
        description="Distill a teacher's Text-to-SQL skill into a small model for one schema.",
    )
    parser.add_argument("--version", action="version", version=f"distillrun {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run every stage of a DistillRun on this machine")
    run.add_argument("manifest", help="a DistillRun YAML file")
    run.add_argument(
        "--store",
        metavar="URI",
        help="where artifacts go: a path, file://... or s3://bucket/prefix "
        "(default: spec.artifacts.uri, else ./distillrun-artifacts)",
    )
    run.add_argument(
        "--no-ray",
        action="store_true",
        help="run parallel work in this process instead of on a local Ray",
    )
    run.add_argument(
        "--accept-estimate",
        action="store_true",
        help="start even when the teacher's pre-flight cost estimate exceeds "
        "spec.teacher.budget.maxUSD (the budget still stops the run when it is spent)",
    )
    run.set_defaults(handler=_run)

    validate = commands.add_parser("validate", help="check DistillRun manifests")
    validate.add_argument("manifests", nargs="+", metavar="MANIFEST")
    validate.add_argument(
        "--cluster",
        action="store_true",
        help="check a manifest meant for the operator: the contract and its files only, not "
        "whether this machine could run it (GPUs, a cached hub student)",
    )
    validate.set_defaults(handler=_validate)

    crd = commands.add_parser("crd", help="print the DistillRun CustomResourceDefinition")
    crd.set_defaults(handler=_crd)

    run_uri_help = (
        "the run's artifact prefix: <store>/<namespace>/<run name>/<uid> ('local' for local "
        "runs), as a path, file://... or s3://..."
    )
    report = commands.add_parser("report", help="(re)build a run's report.html from its artifacts")
    report.add_argument("run", metavar="RUN-URI", help=run_uri_help)
    report.set_defaults(handler=_report)

    status = commands.add_parser("status", help="print a run's numbers, finished or running")
    status.add_argument("run", metavar="RUN-URI", help=run_uri_help)
    status.set_defaults(handler=_status)

    from distillrun.sql.cli import register as register_sql

    register_sql(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    code: int = args.handler(args, out, err)
    return code


if __name__ == "__main__":
    sys.exit(main())
