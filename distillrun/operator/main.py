"""The operator process: `kopf run -m distillrun.operator.main --namespace <team>` (namespaced,
the default install) or `--all-namespaces`; add `--liveness=http://0.0.0.0:8080/healthz` for the
liveness probe and `--log-format=json` for structured logs. Settings come from `DISTILLRUN_*`
environment variables (`OperatorSettings.from_env`)."""

from __future__ import annotations

import kopf

from distillrun.operator.handlers import register
from distillrun.operator.settings import OperatorSettings

register(kopf.get_default_registry(), OperatorSettings.from_env())
