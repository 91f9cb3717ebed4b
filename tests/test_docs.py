"""docs/CONFIG.md is checked against the composed config: every documented default is the real
one, and every key a section's config has (or changes) is documented."""

import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from poolbench.config import compose_config

DOC = Path(__file__).resolve().parent.parent / "docs" / "CONFIG.md"


def leaves(node, prefix=""):
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def sections():
    """(overrides, {key: documented default}) for each `<!-- compose: ... -->` block."""
    found = []
    for block in re.split(r"<!-- compose:", DOC.read_text())[1:]:
        head, _, body = block.partition("-->")
        rows = {}
        for line in body.split("<!--")[0].splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 3 and re.fullmatch(r"`[\w.]+`", cells[0]):
                rows[cells[0].strip("`")] = yaml.safe_load(cells[2].strip("`"))
        found.append((head.split(), rows))
    return found


def composed(overrides):
    return leaves(OmegaConf.to_container(compose_config(overrides, check=False), resolve=False))


BASE = composed([])
SECTIONS = sections()


def test_the_doc_has_the_plain_run_and_every_operator_with_options():
    assert SECTIONS[0][0] == [] and len(SECTIONS[0][1]) == len(BASE)
    from poolbench.pools import POOLS

    documented = {tuple(overrides) for overrides, _ in SECTIONS}
    for name, spec in POOLS.items():
        if spec.options():
            assert (f"pool={name}",) in documented, f"pool={name} has options but no section in CONFIG.md"


@pytest.mark.parametrize("overrides,rows", SECTIONS, ids=[" ".join(o) or "plain" for o, _ in SECTIONS])
def test_config_reference_matches_the_composed_config(overrides, rows):
    config = composed(overrides)
    for key, default in rows.items():
        assert key in config, f"CONFIG.md documents {key}, which `{' '.join(overrides)}` does not have"
        assert config[key] == default, f"CONFIG.md says {key} = {default!r}, the config has {config[key]!r}"
    if overrides:  # the sections list what differs from a plain run (names follow from the choice)
        wanted = {k for k, v in config.items() if (k not in BASE or BASE[k] != v) and not k.endswith(".name")}
    else:
        wanted = set(config)
    missing = sorted(wanted - set(rows))
    assert not missing, f"CONFIG.md lacks {missing} for `{' '.join(overrides)}`"
