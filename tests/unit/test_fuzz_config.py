"""Fuzzing: random YAML trees, env values and flags only ever give a Config or a
ConfigError (which main() turns into one line and exit code 2), never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import cli
from exporter.collectors import all_setting_paths
from exporter.settings import ConfigError

KEYS = sorted({setting_path.path[0] for setting_path in all_setting_paths()} | {"collectors"})
SUBKEYS = sorted({setting_path.path[1] for setting_path in all_setting_paths()} | {"host", "nope"})
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(SUBKEYS) | st.text(max_size=5), inner, max_size=4)),
    max_leaves=12)
trees = st.one_of(values, st.dictionaries(
    st.sampled_from(KEYS) | st.text(max_size=6),
    st.one_of(values, st.dictionaries(st.sampled_from(SUBKEYS), values, max_size=5)),
    max_size=5))


def outcome(**kw: Any) -> None:
    try:
        cli.parse(**kw)
    except ConfigError as err:
        text = str(err)
        assert text and "\n" not in text and "Traceback" not in text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees)
def test_random_yaml_trees(tree: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yml"
        path.write_text(yaml.safe_dump(tree))
        outcome(argv=[f"--config.file={path}"], env={})


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_random_bytes_as_config_file(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yml"
        path.write_bytes(raw)
        outcome(argv=[f"--config.file={path}"], env={})


@settings(max_examples=200, deadline=None)
@given(env=st.dictionaries(
    st.sampled_from([setting_path.env for setting_path in all_setting_paths()] + ["STACKMON_X"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"),
            max_size=15), max_size=4))
def test_random_env_values(env: dict[str, str]) -> None:
    outcome(argv=[], env=env)
