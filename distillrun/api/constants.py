"""Names of the DistillRun resource on the Kubernetes wire; one place so the CRD, the CLI and the
operator never disagree."""

GROUP = "distillrun.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DistillRun"
PLURAL = "distillruns"
SINGULAR = "distillrun"
SHORT_NAMES = ("drun",)
CRD_NAME = f"{PLURAL}.{GROUP}"
FINALIZER = f"{GROUP}/finalizer"

# Kubernetes object names (DNS-1123 labels): lower-case alphanumerics and '-', at most 63 chars.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX_LENGTH = 63
