"""The OpenRPC document from the Methods: msgspec's schemas in draft-07 forms,
described, components renamed where generated code would clash, errors."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

import msgspec

from daemon.openrpc.descriptions import DISCOVER_RESULT, FIELD_DOCS, PARAM_DOCS
from daemon.openrpc.error_data import ANALYZE, COMMON, ERRORS
from daemon.protocol import ENCODER

if TYPE_CHECKING:
    from daemon.protocol import Method

REF: Final = "#/components/schemas/{name}"


def pascal(name: str) -> str:
    """The type name OpenRPC generators give a method (``merge_step`` → ``MergeStep``)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name))


def _json_type(values: list[Any]) -> str | list[str] | None:
    names = []
    for value in values:
        if isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int):
            kind = "integer"
        elif isinstance(value, float):
            kind = "number"
        elif isinstance(value, str):
            kind = "string"
        elif value is None:
            kind = "null"
        else:
            return None
        if kind not in names:
            names.append(kind)
    return names[0] if len(names) == 1 else names


def draft07(node: Any) -> Any:
    """``node`` (msgspec's JSON Schema) in draft-07 forms, recursively."""
    if isinstance(node, list):
        return [draft07(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: draft07(value) for key, value in node.items()}
    if "prefixItems" in out:
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = False
    for key in ("enum", "const"):
        if key in out and "type" not in out:
            values = out[key] if key == "enum" else [out[key]]
            kind = _json_type(values)
            if kind is not None:
                out["type"] = kind
    return out


def _rename(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_rename(item, names) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rename(value, names) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        out["$ref"] = REF.format(name=names.get(name, name))
    return out


def _close(components: dict[str, Any]) -> None:
    """Every Struct's object is closed (``additionalProperties: false``): the
    daemon sends no field a Struct does not declare, and code generated from
    the document then has no ``[k: string]: any`` that lets a misspelt field
    compile. (A new field is a new document: clients regenerate.)"""
    for schema in components.values():
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)


def _describe(components: dict[str, Any]) -> None:
    """Add FIELD_DOCS' descriptions to the properties that have none."""
    for name, schema in components.items():
        docs = FIELD_DOCS.get(name, {})
        for field, prop in schema.get("properties", {}).items():
            if "description" not in prop and field in docs:
                prop["description"] = docs[field]


def _errors() -> dict[str, Any]:
    errors: dict[str, Any] = {}
    for name, code, message, data_type in ERRORS:
        entry: dict[str, Any] = {"code": code, "message": message}
        if data_type is not None:
            # The JSON Schema of this error's ``data`` (OpenRPC leaves it to the server).
            entry["data"] = {"$ref": REF.format(name=data_type.__name__)}
        errors[name] = entry
    return errors


def _errors_of(method: Method) -> list[str]:
    analyze = method.params.__name__ == "AnalyzeParams"
    return COMMON + ANALYZE if analyze else COMMON


def openrpc_document(methods: list[Method], version: str) -> dict[str, Any]:
    """The OpenRPC 1.3 document of ``methods``, from the Structs that validate them."""
    data_types = [t for *_, t in ERRORS if t is not None]
    types = [m.params for m in methods] + [m.result for m in methods] + data_types
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schemas, components = draft07(schemas), draft07(components)
    _describe(components)
    _close(components)
    n = len(methods)
    params_of = {}
    for i, method in enumerate(methods):
        name = schemas[i]["$ref"].rsplit("/", 1)[1]
        params_of[method.name] = components[name]
    # Params are inlined in each method: their Structs are no components.
    param_names = {m.params.__name__ for m in methods}
    idents = {pascal(m.name) for m in methods}
    renames = {
        name: f"{name}Object" for name in components if name in idents and name not in param_names
    }
    kept = {
        renames.get(name, name): schema
        for name, schema in components.items()
        if name not in param_names
    }
    for new in renames.values():
        kept[new]["title"] = new
    kept = _rename(kept, renames)
    entries = []
    for i, method in enumerate(methods):
        params_schema = _rename(params_of[method.name], renames)
        required = set(params_schema.get("required", ()))
        docs = PARAM_DOCS.get(method.params.__name__, {})
        params = []
        for name, schema in params_schema.get("properties", {}).items():
            param: dict[str, Any] = {"name": name, "required": name in required}
            text = schema.get("description") or docs.get(name)
            if text:
                param["description"] = text
            param["schema"] = schema
            params.append(param)
        if method.result is msgspec.Raw:  # rpc.discover: this document
            result_schema: dict[str, Any] = DISCOVER_RESULT
        else:
            result_schema = _rename(schemas[n + i], renames)
        entry: dict[str, Any] = {
            "name": method.name,
            "summary": method.summary,
            "paramStructure": "either",
            "params": params,
            "result": {
                "name": f"{method.name}_result",
                "description": method.summary,
                "schema": result_schema,
            },
            "errors": [
                {"$ref": f"#/components/errors/{name}"}
                for name in COMMON + (ANALYZE if method.params.__name__ == "AnalyzeParams" else [])
            ],
        }
        if method.alias_of:
            entry["description"] = f"Alias of {method.alias_of}."
        entries.append(entry)
    return {
        "openrpc": "1.3.2",
        "info": {"title": "ctxd", "version": version},
        "methods": entries,
        "components": {"schemas": kept, "errors": _errors()},
    }


def encoded_document(methods: list[Method], version: str) -> bytes:
    """``openrpc_document`` as JSON text, what ``rpc.discover`` sends."""
    return ENCODER.encode(openrpc_document(methods, version))
