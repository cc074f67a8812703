"""The chart's copies of facts that live in the code stay equal to them: the CRD it installs
(Helm reads files inside the chart only, so `crds/` is copied in) and the hardware-profile
pattern its values schema checks."""

from __future__ import annotations

import json
from pathlib import Path

from distillrun.api.spec import HARDWARE_PROFILE_PATTERN

ROOT = Path(__file__).parents[3]
CHART = ROOT / "helm" / "distillrun"


def test_the_chart_installs_the_committed_crd() -> None:
    committed = (ROOT / "crds" / "distillrun.dev_distillruns.yaml").read_bytes()
    copy = (CHART / "files" / "distillrun.dev_distillruns.yaml").read_bytes()
    assert copy == committed, (
        "helm/distillrun/files/distillrun.dev_distillruns.yaml differs from crds/: "
        "cp crds/distillrun.dev_distillruns.yaml helm/distillrun/files/"
    )


def test_the_values_schema_checks_profiles_with_the_api_pattern() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["hardwareProfiles"]["items"]["pattern"] == HARDWARE_PROFILE_PATTERN
