"""Pure builders of the child manifests a DistillRun owns (stage ConfigMaps, RayJobs, and the
per-run SQL sandbox resources): plain dicts in, plain dicts out, tested against golden YAML."""
