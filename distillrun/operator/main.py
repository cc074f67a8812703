"""The operator process: `kopf run -m distillrun.operator.main --namespace <team>` (namespaced,
the default install) or `--all-namespaces`; add `--liveness=http://0.0.0.0:8080/healthz` for the
liveness probe and `--log-format=json` for structured logs. Settings come from `DISTILLRUN_*`
environment variables (`OperatorSettings.from_env`); a bad one stops the process with a message
naming it, not a traceback; an unknown `DISTILLRUN_*` variable is logged as a warning."""

from __future__ import annotations

import logging
import sys

import kopf

from distillrun.operator.handlers import register
from distillrun.operator.settings import OperatorSettings, SettingsError

try:
    _settings = OperatorSettings.from_env()
except SettingsError as exc:
    sys.exit(f"distillrun operator: {exc}")
for warning in OperatorSettings.unknown_variables():
    logging.getLogger(__name__).warning(warning)

register(kopf.get_default_registry(), _settings)
