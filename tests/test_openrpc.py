"""The OpenRPC document (daemon/openrpc/) as OpenRPC tools read it (issue 13, point 1).

* results and errors of a live daemon validate against the document with a
  JSON Schema draft-07 validator (``jsonschema.Draft7Validator``);
* the document passes the OpenRPC meta-schema (vendored in tests/data/openrpc);
* TypeScript generated from it by ``@open-rpc/typings`` compiles under
  ``tsc --strict``, with enums and the ``bbox`` tuple typed (not ``any``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from daemon import __version__
from daemon.analysis import RaceManager
from daemon.openrpc import ERRORS, openrpc_document, pascal
from daemon.service import Service
from daemon.stats import Stats
from daemon.store import Store
from daemon.supervisor import Supervisor
from tests.conftest import ConfigFactory
from tests.helpers import register_spec_methods, register_test_methods
from tests.live import (
    BROKEN,
    RawPeer,
    daemon_document,
    fake_models,
    live_config,
    screenshot,
    serving,
)
from tests.npm_tools import npm_tools

DATA = Path(__file__).parent / "data" / "openrpc"


@pytest.fixture
def document(make_config: ConfigFactory) -> dict[str, Any]:
    return daemon_document(make_config())


def validator(document: dict[str, Any], schema: Any) -> Draft7Validator:
    """A draft-07 validator of ``schema`` whose ``#/components/...`` refs
    resolve in ``document``."""
    root = {"allOf": [schema], "components": document["components"]}
    return Draft7Validator(root)


def walk(node: Any, where: str = "$") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((where, node))
        for key, value in node.items():
            found += walk(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += walk(value, f"{where}[{i}]")
    return found


# ---------------------------------------------------------- the document --


def test_the_document_passes_the_openrpc_meta_schema(document: dict[str, Any]) -> None:
    meta = json.loads((DATA / "openrpc-meta-schema-1.14.9.json").read_text())
    json_schema_meta = json.loads((DATA / "json-schema-tools-meta-schema-1.8.0.json").read_text())
    registry: Registry[Any] = Registry().with_resources(
        [
            ("https://meta.json-schema.tools", DRAFT7.create_resource(json_schema_meta)),
            ("https://meta.json-schema.tools/", DRAFT7.create_resource(json_schema_meta)),
            ("https://meta.open-rpc.org/", DRAFT7.create_resource(meta)),
        ]
    )
    errors = sorted(
        Draft7Validator(meta, registry=registry).iter_errors(document), key=lambda e: e.path
    )
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def test_schemas_are_draft07_and_typed(document: dict[str, Any]) -> None:
    for where, node in walk(document):
        assert "prefixItems" not in node, where
        assert node.get("items") is not False, where
        for key in ("enum", "const"):
            if key in node:
                assert "type" in node, f"{where}: {key} without a type"
    bbox = document["components"]["schemas"]["Bubble"]["properties"]["bbox"]
    assert bbox["items"] == [{"type": "integer"}] * 4
    assert bbox["additionalItems"] is False
    check = validator(document, bbox)
    assert check.is_valid([1, 2, 3, 4])
    assert not check.is_valid([1, 2, 3])
    assert not check.is_valid([1, 2, 3, 4, 5])


def test_every_object_is_closed(document: dict[str, Any]) -> None:
    """A Struct sends no other field: ``additionalProperties: false``, so a
    misspelt field is an error to a validator and to generated code."""
    for name, schema in document["components"]["schemas"].items():
        if schema.get("type") == "object" and "properties" in schema:
            assert schema.get("additionalProperties") is False, name
    bubble = validator(document, {"$ref": "#/components/schemas/Bubble"})
    good = {"speaker": "user", "side": "right", "bbox": [1, 2, 3, 4], "text": "hi"}
    assert bubble.is_valid(good)
    assert not bubble.is_valid(good | {"txet": "hi"})


def test_the_async_clients_types_are_current(document: dict[str, Any]) -> None:
    """A field added to a result Struct needs a description (above) and the
    client's TypedDicts regenerated: both fail here, where it is added."""
    from tests.test_client_async import check_typed_results

    check_typed_results(document)


def test_component_names_do_not_collide_with_method_types(document: dict[str, Any]) -> None:
    idents = {pascal(m["name"]) for m in document["methods"]}
    assert "MergeStep" in idents  # the alias merge_step
    schemas = document["components"]["schemas"]
    assert not idents & set(schemas)
    assert schemas["MergeStepObject"]["title"] == "MergeStepObject"
    assert "MergeStep" not in json.dumps(schemas).replace("MergeStepObject", "")


def test_every_param_field_and_result_is_described(document: dict[str, Any]) -> None:
    """A field added without a description fails here: give it
    ``msgspec.Meta(description=...)`` or a line in daemon/openrpc/descriptions.py FIELD_DOCS."""
    missing = []
    for method in document["methods"]:
        for param in method["params"]:
            if not param.get("description"):
                missing.append(f"{method['name']}({param['name']})")
        if not method["result"].get("description"):
            missing.append(f"{method['name']} result")
    for name, schema in document["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{name}.{field}")
    assert not missing, missing
    analyze = next(m for m in document["methods"] if m["name"] == "analyze")
    image = document["components"]["schemas"]["ImageParams"]["properties"]["path"]
    assert "absolute" in image["description"]
    assert "inputs.allowed_dirs" in image["description"]
    assert [p["name"] for p in analyze["params"]][:2] == ["conversation_id", "image"]
    for method in document["methods"]:
        for param in method["params"]:
            Draft7Validator.check_schema(param["schema"])
        Draft7Validator.check_schema(method["result"]["schema"])
    discover = next(m for m in document["methods"] if m["name"] == "rpc.discover")
    assert discover["result"]["schema"]["required"] == ["openrpc", "info", "methods"]
    assert validator(document, discover["result"]["schema"]).is_valid(document)


def test_every_error_is_described_with_the_schema_of_its_data(document: dict[str, Any]) -> None:
    errors = document["components"]["errors"]
    assert {name for name, *_ in ERRORS} == set(errors)
    bad_input = errors["bad_input"]
    assert bad_input["code"] == -32003
    data = document["components"]["schemas"]["BadInputData"]
    assert data["properties"]["reason"]["type"] == "string"
    assert "outside_allowed_dirs" in data["properties"]["reason"]["enum"]
    assert bad_input["data"] == {"$ref": "#/components/schemas/BadInputData"}
    analyze = next(m for m in document["methods"] if m["name"] == "analyze")
    assert {"$ref": "#/components/errors/bad_input"} in analyze["errors"]


# ------------------------------------------------------- a live daemon ---


async def test_results_and_errors_of_a_live_daemon_validate_against_the_document(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTXD_TEST_KEY", "sk-test")
    results: dict[str, list[Any]] = {}
    errors: list[dict[str, Any]] = []
    with fake_models() as fake:
        config = live_config(
            short_tmp,
            fake,
            inputs={"allowed_dirs": [str(short_tmp / "shots")], "max_image_bytes": 4096},
            socket={"max_connections": 3},
        )
        async with serving(config) as app:
            peer = await RawPeer.open(config)

            async def call(method: str, params: Any = None) -> None:
                response = await peer.call(method, params)
                if "error" in response:
                    errors.append(response["error"])
                else:
                    results.setdefault(method, []).append(response["result"])

            document = (await peer.call("rpc.discover"))["result"]
            results["rpc.discover"] = [document]
            shot = screenshot(config, "a.png")
            for method in ("analyze", "analyze", "merge_step"):  # a miss, then hits
                await call(method, {"conversation_id": "c1", "image": {"path": shot}})
            key = {"session_id": "c1", "category": "context_analysis", "resource": "r1"}
            await call("events.append", {**key, "payload": {"note": "mine"}})
            await call("events.list", {"session_id": "c1"})
            await call("events.best", key)
            await call("events.best", {**key, "resource": "nothing here"})
            await call("status")
            await call("health")
            for method in document["methods"]:  # any other method that needs no params
                if method["name"] not in results and not any(
                    p["required"] for p in method["params"]
                ):
                    await call(method["name"])
            # errors, one or more of each kind
            for line in [b"{not json", b'{"jsonrpc": "1.0", "method": "x", "id": 1}']:
                await peer.send_line(line)
                errors.append((await peer.receive())["error"])
            batch = [{"jsonrpc": "2.0", "method": "health", "id": i} for i in range(1001)]
            await peer.send_line(json.dumps(batch).encode())
            errors.append((await peer.receive())["error"])
            await call("no.such.method")
            await call("analyze", {"conversation_id": 5})
            await call("analyze", {"conversation_id": "c", "imag": {}})
            await call("analyze", {"conversation_id": "c"})
            await call("analyze", {"conversation_id": "c", "resource": "never seen"})
            await call("boom", {"seconds": 0})
            shots = Path(config.inputs.allowed_dirs[0])
            (shots / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 5000)
            (shots / "notes.txt").write_bytes(b"hello, not an image")
            for image in [
                {"path": "relative/a.png"},
                {"path": "/etc/passwd"},
                {"path": str(shots / "missing.png")},
                {"path": str(shots)},
                {"path": str(shots / "big.png")},
                {"path": str(shots / "notes.txt")},
                {"path": "/tmp/a\u0000b"},
                {},
                {"url": "ftp://example.com/a.png"},
                {"data": "!!!"},
            ]:
                await call("analyze", {"conversation_id": "c", "image": image})
            await call(
                "analyze",
                {"conversation_id": "c", "image": {"url": f"https://example.com/{BROKEN}.png"}},
            )
            late = screenshot(config, "b.png", b"late")
            await call(
                "analyze", {"conversation_id": "c", "image": {"path": late}, "timeout": 0.01}
            )
            # -32005: a connection past socket.max_connections
            others = [await RawPeer.open(config) for _ in range(3)]
            errors.append((await others[-1].receive())["error"])
            for other in others:
                await other.aclose()
            # -32000: a request while draining
            app.request_drain()
            await call("events.list", {"session_id": "c1"})
            await peer.aclose()
    # -32004: a peer that is not allowed
    root = short_tmp / "forbidden"
    root.mkdir()
    forbidden = live_config(root, fake, socket={"allowed_uids": [54321], "allowed_gids": [54321]})
    async with serving(forbidden):
        refused = await RawPeer.open(forbidden)
        errors.append((await refused.receive())["error"])
        await refused.aclose()

    by_method = {m["name"]: m for m in document["methods"]}
    for method, values in results.items():
        check = validator(document, by_method[method]["result"]["schema"])
        for value in values:
            problems = [e.message for e in check.iter_errors(value)]
            assert not problems, (method, problems, value)
    assert {"analyze", "merge_step", "events.append", "events.list", "events.best"} <= set(results)
    assert {"status", "health", "rpc.discover"} <= set(results)
    test_only = {"sleep", "boom", "unencodable", "background"}  # tests/helpers.py
    assert {m["name"] for m in document["methods"]} - test_only <= set(results)
    documented = document["components"]["errors"]
    by_code = {e["code"]: name for name, e in documented.items()}
    seen = set()
    for error in errors:
        name = by_code[error["code"]]
        seen.add(name)
        declared = documented[name]
        if "data" in error:
            assert "data" in declared, error
            check = validator(document, declared["data"])
            problems = [e.message for e in check.iter_errors(error["data"])]
            assert not problems, (name, problems, error)
    assert seen == set(documented), set(documented) - seen
    reasons = {e["data"]["reason"] for e in errors if e["code"] == -32003}
    assert reasons == {
        "path_not_absolute",
        "outside_allowed_dirs",
        "not_found",
        "not_a_regular_file",
        "too_large",
        "unsupported_format",
        "path_invalid",
        "not_one_source",
        "invalid_url",
        "invalid_base64",
    }


# ------------------------------------------------------------ TypeScript ---

USE_TS = """\
import type {
  AnalyzeResult, Bubble, Layout, MergeStepObject, StatusResult, StrategyStatus,
} from "./index";

export function first(r: AnalyzeResult): string {
  const b: Bubble = r.result.bubbles[0];
  const [x1, y1, x2, y2]: [number, number, number, number] = b.bbox;
  return `${b.speaker} ${b.side} ${x1 + y1 + x2 + y2} ${r.result.layout.left}`;
}
export const speaker: Bubble["speaker"] = "talker";
// @ts-expect-error: speaker is "talker" | "user", not any string
export const nobody: Bubble["speaker"] = "nobody";
// @ts-expect-error: side is "left" | "right"
export const middle: Bubble["side"] = "middle";
// @ts-expect-error: a layout side is a speaker
export const wall: Layout["left"] = "wall";
// @ts-expect-error: bbox is four numbers
export const box: Bubble["bbox"] = [1, 2, 3];
// @ts-expect-error: bbox is numbers
export const words: Bubble["bbox"] = ["a", "b", "c", "d"];
export function state(s: StatusResult): "starting" | "serving" | "draining" {
  return s.state;
}
// @ts-expect-error: a status state is one of three
export const asleep: StatusResult["state"] = "asleep";
// @ts-expect-error: a strategy's state is an enum, not any string
export const dozing: StrategyStatus["state"] = "dozing";
export function text(r: AnalyzeResult): string {
  // @ts-expect-error: objects are closed: a misspelt field does not compile
  return r.result.conversation[0].txet;
}
// The component MergeStep is MergeStepObject (the method merge_step is
// generated as the type MergeStep): both exist, neither is declared twice.
export function bubbles(step: MergeStepObject): number {
  return step.bubbles.length;
}
"""


def test_typescript_generated_from_the_document_compiles_strict(
    document: dict[str, Any], tmp_path: Path
) -> None:
    tools = npm_tools()
    (tmp_path / "openrpc.json").write_text(json.dumps(document))
    out = tmp_path / "ts"
    env = {**os.environ, "NO_UPDATE_NOTIFIER": "1"}
    generated = subprocess.run(
        [
            str(tools / "open-rpc-typings"),
            "-d",
            str(tmp_path / "openrpc.json"),
            "--output-ts",
            str(out),
            "--name-ts",
            "index",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert generated.returncode == 0, generated.stderr
    (out / "use.ts").write_text(USE_TS)
    compiled = subprocess.run(
        [
            str(tools / "tsc"),
            "--strict",
            "--noEmit",
            "--target",
            "es2020",
            str(out / "index.ts"),
            str(out / "use.ts"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr


def test_the_test_daemons_methods_are_described_too(make_config: ConfigFactory) -> None:
    """``rpc.discover`` on the tests' daemons (tests/testd.py adds the JSON-RPC
    spec's example methods and the test methods) gives a document, not -32603:
    a method whose result msgspec can not describe broke it."""
    config = make_config()
    store = Store.open(config.store, config.rank_of())
    try:
        supervisor = Supervisor(8)
        races = RaceManager(config, store, supervisor, {}, Stats(config.strategies))
        service = Service(config, supervisor, store, races)
        register_spec_methods(service)
        register_test_methods(service)
        methods = list(service.methods.values())
    finally:
        store.close()
    names = {m.name for m in methods}
    assert {"get_data", "subtract", "sleep"} <= names
    described = {m["name"] for m in openrpc_document(methods, __version__)["methods"]}
    assert described == names


async def test_the_live_document_is_the_generated_one(short_tmp: Path) -> None:
    """What ``rpc.discover`` sends is ``openrpc_document`` of the served methods."""
    with fake_models() as fake:
        config = live_config(short_tmp, fake)
        async with serving(config) as app:
            peer = await RawPeer.open(config)
            sent = (await peer.call("rpc.discover"))["result"]
            await peer.aclose()
            methods = sorted(app.service.methods.values(), key=lambda m: m.name)
    assert sent == json.loads(json.dumps(openrpc_document(methods, __version__)))
    await trio.lowlevel.checkpoint()
