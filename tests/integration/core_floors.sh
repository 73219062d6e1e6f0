#!/usr/bin/env bash
# libflash's floors (core/CMakeLists.txt): runtime < tensor < train, and
# pipeline above train when it exists. Every `#include "..."` in
# core/**/*.{c,h,cu} is checked; the test fails, printing each offending
# edge, on
#   (i)   an include cycle between core files, or between modules (foo.c,
#         foo.h and foo_internal.h are one module: a cycle there means two
#         files that need each other through their headers);
#   (ii)  a file including a header of a higher floor;
#   (iii) a file naming another floor's header without its floor
#         (`#include "io_internal.h"` instead of "runtime/io_internal.h"),
#         or a core file that belongs to no known floor.
# Env (set by CTest): FLASH_SOURCE_DIR.
set -euo pipefail
: "${FLASH_SOURCE_DIR:?}"
exec python3 - "$FLASH_SOURCE_DIR/core" <<'PY'
import os, re, sys

FLOORS = ["runtime", "tensor", "train", "pipeline"]  # bottom to top
core = sys.argv[1]
include_re = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)

files = []
for d, _, names in os.walk(core):
    for n in names:
        if n.endswith((".c", ".h", ".cu")):
            files.append(os.path.relpath(os.path.join(d, n), core))
files.sort()
by_base = {}
for f in files:
    by_base.setdefault(os.path.basename(f), []).append(f)

def floor_of(rel):
    top = rel.split("/")[0]
    return FLOORS.index(top) if top in FLOORS and "/" in rel else None

problems = []
edges = {f: [] for f in files}  # file -> [(included file, line)]
for f in files:
    if floor_of(f) is None:
        problems.append(f"core/{f}: not in a floor (core/{{{','.join(FLOORS)}}}/)")
        continue
    with open(os.path.join(core, f), encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    for m in include_re.finditer(text):
        name = m.group(1)
        line = text.count("\n", 0, m.start()) + 1
        where = f"core/{f}:{line}"
        if name.startswith("flash/"):
            continue  # the public API, below every floor
        if name.split("/")[0] in FLOORS:
            target = os.path.normpath(name)
            if target in edges:
                edges[f].append((target, line))
            else:
                problems.append(f'{where}: #include "{name}": no such core file')
            continue
        # Unqualified: the compiler looks beside the including file first.
        beside = os.path.normpath(os.path.join(os.path.dirname(f), name))
        if beside in edges:
            if floor_of(beside) != floor_of(f):
                problems.append(f'{where}: #include "{name}" reaches core/{beside} of another floor by a '
                                f'relative path: write "{beside}"')
            edges[f].append((beside, line))
            continue
        others = [g for g in by_base.get(os.path.basename(name), []) if g != f]
        for g in others:
            if floor_of(g) != floor_of(f):
                problems.append(f'{where}: #include "{name}" names core/{g} of floor {g.split("/")[0]} '
                                f'without its floor: write "{g}"')
        # not a core file at all (a system or generated header): not ours to check

for f, outs in edges.items():
    for g, line in outs:
        a, b = floor_of(f), floor_of(g)
        if a is not None and b is not None and b > a:
            problems.append(f"core/{f}:{line} -> core/{g}: floor {FLOORS[a]} includes floor {FLOORS[b]} "
                            f"(allowed: {' < '.join(FLOORS)}, downwards only)")

def find_cycles(graph, label):
    """Every edge of a cycle, found by depth-first search (one report per cycle entry)."""
    state, stack, seen = {}, [], set()
    def visit(u):
        state[u] = 1
        stack.append(u)
        for v, why in graph.get(u, []):
            if state.get(v) == 1:
                cyc = stack[stack.index(v):] + [v]
                key = frozenset(cyc)
                if key not in seen:
                    seen.add(key)
                    problems.append(f"{label} cycle: " + " -> ".join(cyc) + f" (closing edge: {why})")
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2
    for u in sorted(graph):
        if u not in state:
            visit(u)

sys.setrecursionlimit(10000)
find_cycles({f: [(g, f"core/{f}:{line}") for g, line in outs] for f, outs in edges.items()}, "include")

def module(rel):
    d, base = os.path.split(rel)
    stem = os.path.splitext(base)[0]
    if stem.endswith("_internal"):
        stem = stem[: -len("_internal")]
    return f"{d}/{stem}"

mod_graph = {}
for f, outs in edges.items():
    for g, line in outs:
        if module(f) != module(g):
            mod_graph.setdefault(module(f), []).append((module(g), f"core/{f}:{line} includes core/{g}"))
find_cycles(mod_graph, "module")

if problems:
    for p in problems:
        print("FAIL:", p)
    sys.exit(1)
n_edges = sum(len(v) for v in edges.values())
print(f"ok: {len(files)} core files, {n_edges} includes, floors {' < '.join(FLOORS)}, no cycle")
PY
