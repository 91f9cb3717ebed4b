"""Importing a user's own class or factory named by a config's `_target_` ("module.Name").

The module is looked for where Python looks, plus the current folder (a console script's
sys.path starts with its own bin/ folder, not with the folder the user runs it from). Every
way this can fail ends in one sentence that names the fix; errors raised while the user's
module runs are theirs and keep their own message.
"""

from __future__ import annotations

import importlib
import os
import sys

from poolbench.errors import UsageError


def import_target(path: str, key: str):
    """The object `path` names (e.g. "myops.MedianPool"); `key` (e.g. "pool._target_") is the
    config key that gave it, for messages."""
    module_name, _, attribute = str(path).rpartition(".")
    if not module_name or not attribute:
        raise UsageError(f"{key}={path} must name a module and an object in it, e.g. {key}=myops.MedianPool.")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise UsageError(f"{key}={path}: no module named '{err.name}' here: put {err.name.split('.')[0]}.py in "
                             "the current folder or on PYTHONPATH (a run records the target and imports it "
                             "again for eval, resume and sweeps).") from None
        raise
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise UsageError(f"{key}={path}: module '{module_name}' ({getattr(module, '__file__', '?')}) has no "
                         f"'{attribute}'.") from None
