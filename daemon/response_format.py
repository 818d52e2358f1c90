"""The MergeStep as a strict JSON schema for ``response_format``; no I/O.

Generated from ``daemon.models.MergeStep`` (so a field added there is asked
of the models too) and rewritten into the subset that the strict modes of
OpenAI-compatible APIs accept (OpenAI's structured outputs, which OpenRouter
passes on to the providers that support them):

* every object lists all of its properties in ``required`` and has
  ``additionalProperties: false``; a property that is optional in the
  Struct becomes nullable (``anyOf`` with ``{"type": "null"}``);
* ``$ref`` is inlined (some providers do not follow references);
* no numeric, string or array bounds (``minimum``, ``maxItems``,
  ``prefixItems``, ``pattern``...), no ``default`` or ``title``: strict
  modes reject them. The four integers of ``bbox`` are said in its
  ``description`` instead;
* ``conversation`` is left out: ctxd derives it from the bubbles.

The schema only shapes the answer: extract.py still validates it (layout
sides, boxes, text), which a schema cannot say.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from daemon.models import MergeStep

SCHEMA_NAME: Final = "merge_step"
DERIVED: Final = frozenset({"conversation"})  # ctxd writes these, not the model
_DROP: Final = frozenset(
    {
        "title",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "prefixItems",
    }
)
_DESCRIPTIONS: Final = {
    "bbox": "[x1, y1, x2, y2]: four integers, pixels of the image as sent, x1 < x2, y1 < y2",
    "side": "the side of the screen the bubble is on; the side the layout gives its speaker",
    "text": "the bubble's text exactly as written",
    "summary": "one sentence about the conversation, or null",
    "talker": "the other party's name in a one-to-one chat (the header's title), or null",
    "group": "the group's title when the chat is a group (its members are senders), or null",
    "kind": "text; or what the bubble holds instead, with empty text: photo, voice "
    "(a voice note), sticker (also a message of emoji only), file; null means text",
    "sender": "the name shown with the bubble or the quote (a group's member), or null",
    "time": 'the time shown in or beside the bubble, as shown ("10:22"), or null; '
    "never part of text",
    "quote": "the message this bubble replies to, as quoted inside it, or null; never part of text",
}


def strict_schema() -> dict[str, Any]:
    """The JSON schema of the model's answer, strict-mode safe (a new dict each call)."""
    generated = msgspec.json.schema(MergeStep)
    defs: dict[str, Any] = generated["$defs"]
    root: dict[str, Any] = _strict(generated, defs)
    for name in DERIVED:
        root["properties"].pop(name, None)
        root["required"].remove(name)
    return root


def response_format() -> dict[str, Any]:
    """The ``response_format`` value of a chat completions request."""
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": strict_schema()},
    }


def _strict(node: Any, defs: dict[str, Any], name: str | None = None) -> Any:
    if isinstance(node, list):
        return [_strict(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        return _strict(defs[ref.rsplit("/", 1)[-1]], defs, name)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "properties":
            out[key] = {prop: _strict(schema, defs, prop) for prop, schema in value.items()}
        else:
            out[key] = _strict(value, defs)
    if "prefixItems" in node:
        # A tuple: an array of the union of its item types, no length.
        kinds = {item.get("type") for item in node["prefixItems"] if isinstance(item, dict)}
        out["items"] = {"type": kinds.pop()} if len(kinds) == 1 else {}
    if "enum" in out and "type" not in out and all(isinstance(v, str) for v in out["enum"]):
        out["type"] = "string"
    if out.get("type") == "object" and "properties" in out:
        optional = set(out["properties"]) - set(node.get("required", []))
        for prop in optional:
            out["properties"][prop] = _nullable(out["properties"][prop])
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    if name in _DESCRIPTIONS and "description" not in out:
        out["description"] = _DESCRIPTIONS[name]
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    variants = schema.get("anyOf")
    if isinstance(variants, list) and any(v.get("type") == "null" for v in variants):
        return schema
    description = schema.pop("description", None)
    out: dict[str, Any] = {"anyOf": [schema, {"type": "null"}]}
    if description is not None:
        out["description"] = description
    return out
