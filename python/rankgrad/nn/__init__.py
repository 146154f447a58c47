"""torch.nn modules: ranking criteria and embedding losses."""

from ._ranking import ApproxMRRLoss, ApproxNDCGLoss, ApproxRankMSELoss

__all__ = ["ApproxNDCGLoss", "ApproxMRRLoss", "ApproxRankMSELoss"]
