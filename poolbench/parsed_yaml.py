"""Reusing parsed config files while poolbench composes.

Hydra parses every YAML file again on each compose, in pure Python: about a quarter of a
compose's time. Checking a command composes once per swept value, shell completion once per TAB,
so while `config.compose_config` composes, Hydra's two YAML-reading config sources (folders and
packages) get a copy of the config parsed from the same text before. Nothing stays changed
outside the compose. hydra-core is pinned to 1.3 (pyproject.toml), whose sources read YAML
through the `OmegaConf` name of their module; should that name be gone, composing runs as before.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

from hydra._internal.core_plugins import file_config_source, importlib_resources_config_source
from omegaconf import OmegaConf

SOURCES = (file_config_source, importlib_resources_config_source)
_parsed: dict = {}  # file text -> its parsed config (never handed out itself: callers change theirs)


class _ReusingOmegaConf:
    """OmegaConf for the sources, whose `load` parses each distinct text once."""

    def __getattr__(self, name: str):
        return getattr(OmegaConf, name)

    @staticmethod
    def load(file):
        text = file.read()
        if text not in _parsed:
            file.seek(0)  # parsed from the file itself: YAML errors name it as before
            _parsed[text] = OmegaConf.load(file)
        return copy.deepcopy(_parsed[text])


_STAND_IN = _ReusingOmegaConf()


@contextlib.contextmanager
def reuse_parsed_yaml() -> Iterator[None]:
    patched = [module for module in SOURCES if getattr(module, "OmegaConf", None) is OmegaConf]
    for module in patched:
        module.OmegaConf = _STAND_IN
    try:
        yield
    finally:
        for module in patched:
            module.OmegaConf = OmegaConf
