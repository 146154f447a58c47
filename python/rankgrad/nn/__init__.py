"""torch.nn modules: ranking criteria and embedding losses."""

from ._ranknet import RankNetLoss

__all__: list = ["RankNetLoss"]
