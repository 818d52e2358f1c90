"""The OpenRPC 1.3 document ``rpc.discover`` answers; no trio, no I/O.

``document`` builds it, ``descriptions`` and ``error_data`` say what it
says, ``pytypes`` turns it into the TypedDicts of the async client.

Generated from the Structs that validate params and results (msgspec's JSON
Schema), then made into what OpenRPC tools read, JSON Schema draft-07:

* a fixed-length array (``bbox``) is ``items: [...]`` + ``additionalItems:
  false``, never 2020-12's ``prefixItems`` (a draft-07 validator ignores it
  and reads ``items: false`` as "no items at all");
* every ``enum`` and ``const`` carries its ``type`` (else generators type it
  ``any``);
* every object is closed (``additionalProperties: false``: a Struct sends
  nothing else), so generated types have no ``[k: string]: any`` and a
  misspelt field does not compile;
* a component named like a method's generated type (``MergeStep`` and the
  alias ``merge_step``) is renamed ``<Name>Object``, so code generated from
  the document compiles;
* every param, field and result has a ``description`` (``FIELD_DOCS``,
  ``PARAM_DOCS``; a ``msgspec.Meta(description=...)`` on a field wins);
* the errors are in ``components.errors``, each with the JSON Schema of its
  ``error.data`` as ``data``, and every method lists the ones it can give.

``tests/test_openrpc.py`` checks results and errors of a live daemon against
the document with a draft-07 validator, the document against the OpenRPC
meta-schema, and TypeScript generated from it under ``tsc --strict``.
"""

from daemon.openrpc.document import encoded_document, openrpc_document, pascal
from daemon.openrpc.error_data import ERRORS
from daemon.openrpc.pytypes import GENERATED_BEGIN, GENERATED_END, python_types

__all__ = [
    "ERRORS",
    "GENERATED_BEGIN",
    "GENERATED_END",
    "encoded_document",
    "openrpc_document",
    "pascal",
    "python_types",
]
