"""Training objectives. Importing this package registers every objective."""
from . import byot, ce, eed, mate, phuong, sdn  # noqa: F401  (registers the objectives)
from .functional import kd_rampup, kl_t, pairwise_kl_t
from .registry import OBJECTIVES, create_objective, list_objectives, register_objective

__all__ = ["OBJECTIVES", "create_objective", "list_objectives", "register_objective",
           "kd_rampup", "kl_t", "pairwise_kl_t"]
