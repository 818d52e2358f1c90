"""daemon/response_format.py: the MergeStep as a strict JSON schema."""

from __future__ import annotations

import json
from typing import Any

from daemon.extract import parse_merge_step
from daemon.models import Bubble, MergeStep, Participants
from daemon.response_format import response_format, strict_schema
from tests.fake_provider import ANSWER, strict_schema_problem


def objects(schema: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found += objects(value)
    elif isinstance(schema, list):
        for value in schema:
            found += objects(value)
    return found


def test_the_schema_is_strict_mode_safe() -> None:
    schema = strict_schema()
    assert strict_schema_problem(schema) is None
    for obj in objects(schema):
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    text = json.dumps(schema)
    for banned in ("minItems", "maxItems", "prefixItems", "minimum", "$ref", "default"):
        assert banned not in text
    assert response_format()["json_schema"]["strict"] is True


def test_the_schema_follows_the_models_fields() -> None:
    schema = strict_schema()
    assert set(schema["properties"]) == set(MergeStep.__struct_fields__) - {"conversation"}
    bubble = schema["properties"]["bubbles"]["items"]
    assert set(bubble["properties"]) == set(Bubble.__struct_fields__)
    assert bubble["properties"]["bbox"]["items"] == {"type": "integer"}
    participants = schema["properties"]["participants"]
    assert set(participants["required"]) == set(Participants.__struct_fields__)
    # optional in the Struct: nullable in the schema
    assert {"type": "null"} in participants["properties"]["user"]["anyOf"]
    assert {"type": "null"} in schema["properties"]["summary"]["anyOf"]


def test_an_answer_that_follows_the_schema_is_a_valid_merge_step() -> None:
    step = parse_merge_step(json.dumps(ANSWER))
    assert [b.text for b in step.bubbles] == ["真的假的", "真的"]


def test_the_optional_fields_are_described_and_asked_for_in_the_default_prompt() -> None:
    """SPEC §3's optional fields (kind, sender, time, quote, group): the schema
    says what each means, and the default prompt asks for each, so a model
    fills them where the app shows them."""
    from daemon.providers import DEFAULT_PROMPT

    schema = strict_schema()
    bubble = schema["properties"]["bubbles"]["items"]["properties"]
    participants = schema["properties"]["participants"]["properties"]
    for name in ("kind", "sender", "time", "quote"):
        assert bubble[name].get("description"), name
        assert f'"{name}"' in DEFAULT_PROMPT, name
    assert participants["group"].get("description")
    assert '"group"' in DEFAULT_PROMPT
    for chrome in ("keyboard", "placeholder", "draft", "date", "read ticks"):
        assert chrome in DEFAULT_PROMPT, chrome
