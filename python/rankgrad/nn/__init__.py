"""torch.nn modules: ranking criteria and embedding losses."""

from ._lambdarank import LambdaRankLoss

__all__: list = ["LambdaRankLoss"]
