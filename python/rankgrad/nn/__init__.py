"""torch.nn modules: ranking criteria and embedding losses."""

__all__: list = []
