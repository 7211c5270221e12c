"""Registers per thread and spills of every kernel the loader builds, from ptxas, without a GPU.

Compiles each of :func:`cuda_rnn.cuda.loader.module_builds` with NVRTC (cuda-bindings and the
CUDA header wheels of the test extra) for one architecture, with the loader's options plus
``-Xptxas=-v``, and prints one markdown row per instantiation: registers, stack frame, spill
stores and spill loads in bytes.

    python profiles/ptxas_registers.py [--arch sm_90] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import re

from cuda import pathfinder
from cuda.bindings import nvrtc

from cuda_rnn.cuda import loader

#: ptxas -v: the entry being compiled, then its usage line.
_ENTRY = re.compile(r"Compiling entry function '(\w+)'")
_USAGE = re.compile(r"Used (\d+) registers")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def _ok(result: tuple, what: str) -> tuple:
    err, *rest = result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"{what} failed: {err}")
    return tuple(rest)


def _includes() -> list[str]:
    dirs = [pathfinder.find_nvidia_header_directory(p) for p in ("cudart", "cccl")]
    if None in dirs:
        raise RuntimeError("CUDA headers not found: pip install 'cuda_rnn[test]'")
    return [f"-I{d}" for d in dirs]


def ptxas_usage(build: loader.ModuleBuild, arch: str) -> dict[str, dict[str, int]]:
    """Per name expression: registers, stack frame, spill stores and loads (bytes)."""
    (prog,) = _ok(nvrtc.nvrtcCreateProgram(build.source.encode(), build.filename.encode(),
                                           0, [], []), "nvrtcCreateProgram")
    try:
        for name in build.name_expressions:
            _ok(nvrtc.nvrtcAddNameExpression(prog, name.encode()), f"adding {name}")
        options = [*build.options, *_includes(), f"--gpu-architecture={arch}", "-Xptxas=-v"]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(options), [o.encode() for o in options])
        (size,) = _ok(nvrtc.nvrtcGetProgramLogSize(prog), "log size")
        log = b" " * size
        _ok(nvrtc.nvrtcGetProgramLog(prog, log), "log")
        text = log.rstrip(b"\x00 ").decode(errors="replace")
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"NVRTC could not compile {build.filename}:\n{text}")
        lowered = {_ok(nvrtc.nvrtcGetLoweredName(prog, n.encode()), n)[0].decode(): n
                   for n in build.name_expressions}
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    usage: dict[str, dict[str, int]] = {}
    entry = None
    for line in text.splitlines():
        if (match := _ENTRY.search(line)) is not None:
            entry = lowered[match.group(1)]
        elif entry is not None and (match := _FRAME.search(line)) is not None:
            usage.setdefault(entry, {}).update(
                dict(zip(("stack", "spill_stores", "spill_loads"), map(int, match.groups()))))
        elif entry is not None and (match := _USAGE.search(line)) is not None:
            usage.setdefault(entry, {})["registers"] = int(match.group(1))
    return usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    table = {b.filename: ptxas_usage(b, args.arch) for b in loader.module_builds()}
    print(f"| kernel ({args.arch}) | registers | stack | spill stores | spill loads |")
    print("|---|---|---|---|---|")
    for usage in table.values():
        for name, u in usage.items():
            print(f"| {name} | {u['registers']} | {u['stack']} | {u['spill_stores']} "
                  f"| {u['spill_loads']} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
