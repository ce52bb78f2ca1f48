"""Declaring the runtime fleet: TOML, YAML, JSON in the environment, the one-endpoint fleet of
the single-runtime settings, and clear errors for what cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genq.fleet.config import (
    ANY_MODEL,
    FleetConfigError,
    fleet_concurrency,
    fleet_dispatch,
    load_fleet,
    model_matches,
)
from genq.settings import Settings
from schemas import ErrorCode


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_a_toml_file_declares_endpoints_in_order(tmp_path: Path) -> None:
    path = tmp_path / "runtimes.toml"
    path.write_text(
        '[[endpoints]]\nname = "box"\nkind = "ollama"\nurl = "http://box:11434"\n'
        'models = ["llama3.2"]\nslots = 4\nweight = 2\n\n'
        '[[endpoints]]\nname = "laptop"\nkind = "embedded"\nslots = "auto"\n'
    )
    fleet = load_fleet(settings(tmp_path, runtimes_file=path, embedded_port=8123))
    assert fleet.declared
    box, laptop = fleet.endpoints
    assert (box.name, box.protocol, box.slots, box.weight) == ("box", "ollama", 4, 2.0)
    assert box.models == ("llama3.2",) and not box.discovers
    assert laptop.url == "http://127.0.0.1:8123" and laptop.protocol == "openai"
    assert laptop.discovers and laptop.slots == "auto"
    assert fleet.serving("llama3.2:latest", {}) == [box]
    assert fleet.serving("gemma", {"laptop": ["gemma"]}) == [laptop]
    assert fleet.model_names({"laptop": ["gemma"]}) == ["gemma", "llama3.2"]


def test_yaml_and_the_environment_declare_the_same(tmp_path: Path) -> None:
    path = tmp_path / "runtimes.yaml"
    path.write_text("endpoints:\n  - {name: a, url: 'http://a:1', models: [m], slots: 2}\n")
    from_yaml = load_fleet(settings(tmp_path, runtimes_file=path))
    raw = json.dumps([{"name": "a", "url": "http://a:1", "models": ["m"], "slots": 2}])
    from_env = load_fleet(settings(tmp_path, runtimes=raw))
    assert from_yaml.endpoints == from_env.endpoints
    assert fleet_dispatch(settings(tmp_path, runtimes=raw))
    assert fleet_concurrency(settings(tmp_path, runtimes=raw)) == 3  # 2 slots and one more


def test_without_a_declaration_the_single_runtime_is_a_one_endpoint_fleet(tmp_path: Path) -> None:
    s = settings(tmp_path, runtime_url="http://rt:8000", runtime_kind="ollama", runtime_slots=3)
    fleet = load_fleet(s)
    assert not fleet.declared and fleet_dispatch(s)  # dispatched, like a declared fleet
    (only,) = fleet.endpoints
    assert (only.name, only.kind, only.url, only.slots) == (
        "default",
        "ollama",
        "http://rt:8000",
        3,
    )
    assert only.models == (ANY_MODEL,) and fleet.takes_any_model()
    assert fleet.serving("whatever", {}) == [only]
    assert fleet_concurrency(s) == 3
    # GENQ_FLEET_DISPATCH=false: straight to the broker (a declared fleet ignores it).
    direct = settings(tmp_path, runtime_url="http://rt:8000", fleet_dispatch=False)
    assert not fleet_dispatch(direct)
    raw = json.dumps([{"name": "a", "url": "http://a:1", "models": ["m"], "slots": 2}])
    assert fleet_dispatch(settings(tmp_path, runtimes=raw, fleet_dispatch=False))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("endpoints = []\n", "non-empty list of endpoints"),
        ('[[endpoints]]\nname = "a"\n', "endpoint 'a' needs a url"),
        ('[[endpoints]]\nname = "a"\nurl = "http://a"\nkind = "vllm"\n', "endpoint #1: kind"),
        ('[[endpoints]]\nname = "a"\nurl = "http://a"\nslots = 0\n', "endpoint #1: slots"),
        ('[[endpoints]]\nname = "a"\nurl = "http://a"\nspeed = 1\n', "endpoint #1: speed"),
        ('[[endpoints]]\nname = "a b"\nurl = "http://a"\n', "endpoint #1: name"),
        (
            '[[endpoints]]\nname = "a"\nurl = "http://a"\n[[endpoints]]\nname = "a"\nurl = "http://b"\n',
            "names must be unique",
        ),
        ("[[endpoints]\n", "does not parse"),
    ],
)
def test_a_declaration_that_cannot_be_used_says_where_and_why(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "runtimes.toml"
    path.write_text(text)
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(settings(tmp_path, runtimes_file=path))
    assert says in caught.value.message
    assert str(path) in caught.value.message
    assert caught.value.code is ErrorCode.INVALID_REQUEST


def test_a_missing_file_and_bad_json_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FleetConfigError, match="cannot read the runtimes file"):
        load_fleet(settings(tmp_path, runtimes_file=tmp_path / "nope.toml"))
    with pytest.raises(FleetConfigError, match="GENQ_RUNTIMES is not JSON"):
        load_fleet(settings(tmp_path, runtimes="[{"))


def test_model_names_match_with_ollamas_latest_tag() -> None:
    assert model_matches("llama3.2", ["llama3.2:latest"])
    assert model_matches("llama3.2:latest", ["llama3.2"])
    assert not model_matches("llama3.2:1b", ["llama3.2"])
    assert model_matches("anything", [ANY_MODEL])
