#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compares the dynamic symbol table of our libibverbs.so.1 with rdma-core 44's.

usage: check_symbols.py LIB DATA_DIR ENGINE_H SIW_VERBS_H

  LIB          build/lib/libibverbs.so.1
  DATA_DIR     tests/verbs/data: libibverbs.syms.tsv (rdma-core 44's exports: node, name,
               FUNC/OBJECT, default or compat-only), imports.tsv and provider_imports.tsv
               (what the target programs and libmlx5/libefa import)
  ENGINE_H     src/engine/engine.h and SIW_VERBS_H src/verbs/siw_verbs.h: their functions
               must make up the SOFTIWARP_PRIVATE_1 node exactly

Checks: SONAME; the version nodes and their parents; every rdma-core (node, name, type,
default/compat) exported exactly as rdma-core exports it and nothing else; every symbol the
target binaries import present; SOFTIWARP_PRIVATE_1 = engine.h + siw_verbs.h; no engine
function left undefined. Prints the counts per node and exits 1 on any difference.
"""
import os
import re
import subprocess
import sys

PUBLIC_NODES = ["IBVERBS_1.0", "IBVERBS_1.1"] + ["IBVERBS_1.%d" % i for i in range(5, 15)]
PRIVATE_NODE = "IBVERBS_PRIVATE_34"
OUR_NODE = "SOFTIWARP_PRIVATE_1"

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def readelf(*args):
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True,
                          text=True).stdout


def defined_symbols(lib):
    """{(node, name): (type, default)} of the defined dynamic symbols, plus UND names."""
    syms, undef, unversioned = {}, set(), []
    for line in readelf("--dyn-syms", lib).splitlines():
        f = line.split()
        if len(f) < 8 or not f[0].endswith(":") or not f[0][:-1].isdigit():
            continue
        typ, bind, ndx, full = f[3], f[4], f[6], f[7]
        if bind not in ("GLOBAL", "WEAK"):
            continue
        if ndx == "UND":
            undef.add(full.split("@")[0])
            continue
        if "@@" in full:
            name, node = full.split("@@", 1)
            default = True
        elif "@" in full:
            name, node = full.split("@", 1)
            default = False
        else:
            # GNU ld also emits each version node as an absolute symbol of its own name.
            if ndx == "ABS" and typ == "OBJECT":
                continue
            unversioned.append(full)
            continue
        syms[(node, name)] = (typ, default)
    return syms, undef, unversioned


def version_nodes(lib):
    """[(node, parent or None)] from .gnu.version_d, BASE entry excluded."""
    nodes, cur = [], None
    text = readelf("-V", lib)
    text = text.split("Version definition section", 1)[-1].split("Version needs section")[0]
    for line in text.splitlines():
        m = re.search(r"Flags: (\S+)\s+Index: \d+\s+Cnt: \d+\s+Name: (\S+)", line)
        if m:
            cur = None if m.group(1) == "BASE" else m.group(2)
            if cur:
                nodes.append([cur, None])
            continue
        m = re.search(r"Parent 1: (\S+)", line)
        if m and cur:
            nodes[-1][1] = m.group(1)
    return [tuple(n) for n in nodes]


def c_functions(path, prefix):
    """Names of the functions a header declares (comments stripped, pointers excluded)."""
    text = open(path).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    names = set()
    for m in re.finditer(r"(?<!\w)(%s\w*)\s*\(" % re.escape(prefix), text):
        before = text[max(0, m.start() - 2):m.start()]
        if "(*" in before:
            continue
        names.add(m.group(1))
    return names


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        return 2
    lib, data, engine_h, siw_verbs_h = sys.argv[1:]

    dyn = readelf("-d", lib)
    if "Library soname: [libibverbs.so.1]" not in dyn:
        fail("SONAME is not libibverbs.so.1")

    # Version nodes: rdma-core's chain, the private node and ours standing alone.
    want_nodes = [(PUBLIC_NODES[0], None)]
    want_nodes += [(n, PUBLIC_NODES[i]) for i, n in enumerate(PUBLIC_NODES[1:])]
    want_nodes += [(PRIVATE_NODE, None), (OUR_NODE, None)]
    got_nodes = version_nodes(lib)
    if sorted(got_nodes) != sorted(want_nodes):
        fail("version nodes differ:\n  got  %s\n  want %s" % (got_nodes, want_nodes))

    syms, undef, unversioned = defined_symbols(lib)
    for name in unversioned:
        fail("exported without a version: %s" % name)

    # rdma-core's table, exactly.
    want = {}
    for line in open(os.path.join(data, "libibverbs.syms.tsv")):
        f = line.rstrip("\n").split("\t")
        if len(f) < 4:
            continue
        want[(f[0], f[1])] = (f[2], f[3] == "default")
    ours = {k: v for k, v in syms.items() if k[0] != OUR_NODE}
    for key in sorted(set(want) - set(ours)):
        fail("missing %s@%s%s" % (key[1], "@" if want[key][1] else "", key[0]))
    for key in sorted(set(ours) - set(want)):
        fail("extra %s@%s" % (key[1], key[0]))
    for key in sorted(set(want) & set(ours)):
        if want[key] != ours[key]:
            fail("%s@%s: %s, %s in rdma-core; ours %s, %s" %
                 (key[1], key[0], want[key][0], "default" if want[key][1] else "compat",
                  ours[key][0], "default" if ours[key][1] else "compat"))

    # What the target programs and the provider libraries they drag in import.
    for fname in ("imports.tsv", "provider_imports.tsv"):
        for line in open(os.path.join(data, fname)):
            f = line.rstrip("\n").split("\t")
            if len(f) < 3 or not f[2].startswith("IBVERBS"):
                continue
            if (f[2], f[1]) not in syms:
                fail("%s imports %s@%s, which is not exported" % (f[0], f[1], f[2]))

    # Our node: the engine API and the mapping functions, nothing more, nothing less.
    want_ours = c_functions(engine_h, "eng_") | c_functions(siw_verbs_h, "siw_verbs_")
    got_ours = {k[1] for k in syms if k[0] == OUR_NODE}
    for name in sorted(want_ours - got_ours):
        fail("%s not exported in %s" % (name, OUR_NODE))
    for name in sorted(got_ours - want_ours):
        fail("%s exported in %s but not declared in engine.h/siw_verbs.h" % (name, OUR_NODE))
    for key, (typ, default) in syms.items():
        if key[0] == OUR_NODE and (typ != "FUNC" or not default):
            fail("%s@%s should be a default-version function" % (key[1], OUR_NODE))
    for name in sorted(n for n in undef if n.startswith(("eng_", "siw_", "vrb_"))):
        fail("%s is undefined in the library (engine not linked completely?)" % name)

    # Summary by node, ours against rdma-core's.
    print("%-22s %6s %6s %8s" % ("node", "ours", "rdma", "compat"))
    for node in PUBLIC_NODES + [PRIVATE_NODE, OUR_NODE]:
        n_ours = sum(1 for k in syms if k[0] == node)
        n_want = sum(1 for k in want if k[0] == node)
        n_compat = sum(1 for k, v in syms.items() if k[0] == node and not v[1])
        print("%-22s %6d %6d %8d" % (node, n_ours, n_want, n_compat))
    print("%-22s %6d %6d" % ("total", len(syms), len(want)))
    if failures:
        print("%d difference(s)" % len(failures))
        return 1
    print("symbol table matches rdma-core 44")
    return 0


if __name__ == "__main__":
    sys.exit(main())
