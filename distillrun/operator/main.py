"""The operator process: `kopf run -m distillrun.operator.main --namespace <team>` (namespaced,
the default install) or `--all-namespaces`; add `--liveness=http://0.0.0.0:8080/healthz` for the
liveness probe and `--log-format=json` for structured logs. Settings come from `DISTILLRUN_*`
environment variables (`OperatorSettings.from_env`); an unknown `DISTILLRUN_*` variable is
logged as a warning.

Everything the operator is configured with is checked here, before kopf starts: a bad setting,
or a file in `DISTILLRUN_PROFILES_DIR` (the chart's `hardwareProfileFiles` and
`deepSpeedConfigFiles`) that cannot be read or is not a valid hardware profile, stops the process
with one message naming the variable or the file and what is wrong, not a traceback. Found later,
in kopf's startup handler, the same mistake would be retried forever by kopf, and the operator
would neither serve nor exit.
"""

from __future__ import annotations

import logging
import sys

import kopf

from distillrun.api.profiles import ProfileError, load_profiles, profile_files
from distillrun.operator.handlers import register
from distillrun.operator.settings import OperatorSettings, SettingsError

try:
    _settings = OperatorSettings.from_env()
    load_profiles()
    profile_files()
except (SettingsError, ProfileError) as exc:
    sys.exit(f"distillrun operator: {exc}")
for warning in OperatorSettings.unknown_variables():
    logging.getLogger(__name__).warning(warning)

register(kopf.get_default_registry(), _settings)
