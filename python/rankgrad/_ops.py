"""Registers every `torch.ops.rankgrad.*` custom op at once (imports torch): the one module that
loads the families' `_op` modules. `rankgrad` imports it when the first torch name is used, so a
compiled model, `torch.ops.rankgrad.<op>` and `torch.library.opcheck` all find every op."""

from .approx import _op as approx  # noqa: F401
from .lambdarank import _op as lambdarank  # noqa: F401
from .listwise import _op as listwise  # noqa: F401
from .metrics import _op as metrics  # noqa: F401
from .ranknet import _op as ranknet  # noqa: F401
