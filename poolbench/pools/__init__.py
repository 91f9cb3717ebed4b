"""Every downsampling operator, and the registry that builds one by name.

Each operator fills the same slot of the network: (N, C, H, W) -> (N, C, H', W').
Importing this package registers them all; `build_pool(pool_cfg, channels)` builds one, after
checking the config's options against the operator's signature (its defaults are the only ones).

    basic.py     max, avg, strided, global, fractional
    weighted.py  attention, softpool, stochastic (weights within each window)
    lip.py       lip (Local Importance-based Pooling: 3x3 windows, learned importance)
    polyphase.py aps (adaptive polyphase sampling: exactly shift-invariant subsampling)
    mixing.py    mixed, gated (learned max/avg blends)
    smooth.py    blur (anti-aliased max), lp (power mean)
    window_max.py  the 2x2 window maximum they share (faster where no gradient flows back)
"""

from poolbench.pools import basic, lip, mixing, polyphase, smooth, weighted  # noqa: F401  (registers the operators)
from poolbench.pools.registry import POOLS, PoolSpec, build_pool, get_spec, pool_names, register

__all__ = ["POOLS", "PoolSpec", "build_pool", "get_spec", "pool_names", "register"]
