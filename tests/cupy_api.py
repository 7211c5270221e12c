"""Every CuPy, cupy_backends and nvmath name cuda_rnn uses, and how it calls each.

One list, read by two tests: tests/test_realcupy_api.py checks every entry against the real
packages, tests/test_cudasim.py against the simulator's stand-ins (tests/cudasim), so the two
cannot drift apart. :func:`scan_library` reads cuda_rnn's source for every such name reached
from an import (with the arguments of each call), and test_realcupy_api checks that the list
holds them all. Methods and attributes of the objects those calls return (a kernel, a stream,
an array) are out of the scan's reach: they are listed by hand below the scanned names.
"""
from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent / "cuda_rnn"
ROOTS = ("cupy", "cupy_backends", "nvmath")


@dataclass(frozen=True)
class Use:
    """How cuda_rnn uses one name.

    ``positional`` is the most positional arguments a call passes (None: the name is read,
    never called); ``keywords`` the keyword arguments any call passes; ``types`` the Python
    type of arguments whose type the callee declares (CuPy's Cython ``tuple`` parameters);
    ``instance`` marks an attribute or method of an instance of the class the name starts
    with, checked on an instance where one can be made without a GPU.
    """

    positional: int | None = 0
    keywords: tuple[str, ...] = ()
    types: dict[str, str] = field(default_factory=dict)
    instance: bool = False


ATTRIBUTE = Use(positional=None)

#: Names cuda_rnn reaches from its imports (what scan_library finds).
SCANNED: dict[str, Use] = {
    "cupy": ATTRIBUTE,
    "cupy.RawModule": Use(0, ("code", "options", "name_expressions",
                              "enable_cooperative_groups"), {"options": "tuple"}),
    "cupy.asarray": Use(1),
    "cupy.ascontiguousarray": Use(1, ("dtype",)),
    "cupy.concatenate": Use(1),
    "cupy.cuda.Device": Use(1),
    "cupy.cuda.ExternalStream": Use(2),
    "cupy.cuda.Stream": Use(0, ("non_blocking",)),
    "cupy.cuda.Stream.from_external": Use(1),
    "cupy.cuda.compiler.CompileException": ATTRIBUTE,
    "cupy.cuda.driver.CUDADriverError": ATTRIBUTE,
    "cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor": Use(3),
    "cupy.cuda.get_current_stream": Use(0),
    "cupy.cuda.memory.OutOfMemoryError": ATTRIBUTE,
    "cupy.cuda.runtime.CUDARuntimeError": ATTRIBUTE,
    "cupy.cuda.runtime.getDeviceCount": Use(0),
    "cupy.cuda.runtime.getDeviceProperties": Use(1),
    "cupy.cuda.runtime.memGetInfo": Use(0),
    "cupy.empty": Use(2),
    "cupy.float32": ATTRIBUTE,
    "cupy.from_dlpack": Use(1),
    "cupy.full": Use(2, ("dtype",)),
    "cupy.get_default_memory_pool": Use(0),
    "cupy.int32": ATTRIBUTE,
    "cupy.ones": Use(2),
    "cupy.uint16": ATTRIBUTE,
    "cupy.uint8": ATTRIBUTE,
    "cupy.zeros": Use(2),
    "cupy_backends.cuda.libs.cublas": ATTRIBUTE,
    "cupy_backends.cuda.libs.cublas.CUBLASError": ATTRIBUTE,
    "nvmath.bindings.cublas": ATTRIBUTE,
    "nvmath.bindings.cublas.create": Use(0),
    "nvmath.bindings.cublas.cuBLASError": ATTRIBUTE,
    "nvmath.bindings.cublas.gemm_ex": Use(19),
    "nvmath.bindings.cublas.get_property": Use(1),
    "nvmath.bindings.cublas.set_stream": Use(2),
    "nvmath.bindings.cublas.set_workspace": Use(3),
}

#: Methods and attributes of what those return, as cuda_rnn uses them.
RETURNED: dict[str, Use] = {
    "cupy.RawModule.compile": Use(0, instance=True),
    "cupy.RawModule.get_function": Use(1, instance=True),
    # kernel(grid, block, args, shared_mem=...): CuPy forwards the keywords to
    # Function.__call__, whose grid and block are Cython tuples.
    "cupy.RawKernel.__call__": Use(3, ("shared_mem",), {"grid": "tuple", "block": "tuple"},
                                   instance=True),
    "cupy.RawKernel.max_dynamic_shared_size_bytes": Use(None, instance=True),
    "cupy.RawKernel.kernel": Use(None, instance=True),
    "cupy.cuda.function.Function.ptr": Use(None, instance=True),
    "cupy.cuda.Device.id": Use(None, instance=True),
    "cupy.cuda.Device.attributes": Use(None, instance=True),
    "cupy.cuda.Stream.ptr": Use(None, instance=True),
    "cupy.cuda.Stream.begin_capture": Use(0, instance=True),
    "cupy.cuda.Stream.end_capture": Use(0, instance=True),
    "cupy.cuda.Stream.record": Use(0, instance=True),
    "cupy.cuda.Stream.wait_event": Use(1, instance=True),
    "cupy.cuda.Stream.__enter__": Use(0, instance=True),
    "cupy.cuda.Stream.__exit__": Use(3, instance=True),
    "cupy.cuda.Graph.launch": Use(0, ("stream",), instance=True),
    "cupy.ndarray.data": Use(None, instance=True),
    "cupy.ndarray.get": Use(0, instance=True),
    "cupy.cuda.MemoryPool.free_bytes": Use(0, instance=True),
}

API: dict[str, Use] = {**SCANNED, **RETURNED}


def scan_library(package: Path = PACKAGE) -> dict[str, tuple[int, set[str]]]:
    """Every CuPy / cupy_backends / nvmath name cuda_rnn's source reaches from an import:
    dotted name -> (most positional arguments of a call, keywords of any call); -1 for a
    name only read. Names bound by ``import X`` / ``from X import Y`` count per file."""
    uses: dict[str, tuple[int, set[str]]] = {}

    def note(name: str, positional: int = -1, keywords: tuple[str, ...] = ()) -> None:
        most, seen = uses.get(name, (-1, set()))
        uses[name] = (max(most, positional), seen | set(keywords))

    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in ROOTS:
                        bound = alias.asname or alias.name.split(".")[0]
                        aliases[bound] = alias.name if alias.asname else bound
                        note(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.module \
                    and node.module.split(".")[0] in ROOTS:
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    note(f"{node.module}.{alias.name}")

        def dotted(node: ast.AST) -> str | None:
            if isinstance(node, ast.Name):
                return aliases.get(node.id)
            if isinstance(node, ast.Attribute):
                base = dotted(node.value)
                return base and f"{base}.{node.attr}"
            return None

        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            name = dotted(node) if isinstance(node, ast.Attribute) else None
            if name is None:
                continue
            parent = parents.get(node)
            if isinstance(parent, ast.Attribute) and dotted(parent):
                continue  # the longer chain is noted instead
            if isinstance(parent, ast.Call) and parent.func is node:
                note(name, len(parent.args), tuple(k.arg for k in parent.keywords if k.arg))
            else:
                note(name)
    return uses


def resolve(name: str, modules: dict[str, Any]) -> Any:
    """The object ``name`` names, starting from one of ``modules`` (root name -> module)."""
    root, *rest = name.split(".")
    target = modules[root]
    for i, part in enumerate(rest):
        try:
            target = getattr(target, part)
        except AttributeError:
            # A submodule reached by import only (nvmath.bindings.cublas).
            target = importlib.import_module(".".join([root, *rest[: i + 1]]))
    return target


def check_call(signature: inspect.Signature, use: Use, name: str) -> None:
    """Raise AssertionError unless ``signature`` accepts ``use``'s positional and keyword
    arguments (after ``self`` for an instance method)."""
    params = list(signature.parameters.values())
    if use.instance and params and params[0].name == "self":
        params = params[1:]
    bare = inspect.Signature([p.replace(annotation=inspect.Parameter.empty) for p in params])
    args = [object()] * (use.positional or 0)
    try:
        bare.bind(*args, **{k: object() for k in use.keywords})
    except TypeError as exc:
        raise AssertionError(f"{name}{bare} does not take {use.positional} positional "
                             f"arguments and keywords {use.keywords}: {exc}") from exc
