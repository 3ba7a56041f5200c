#!/usr/bin/env python3
"""Fails when files of one folder call each other in a circle (HACKING.md, the layering).

Usage: callcycles.py BUILD FOLDER...   e.g. callcycles.py build etc queue events server loader

The graph is read from the objects, not the sources: for each BUILD/FOLDER/*.o, `nm -P`
gives the global symbols the file defines and the ones it needs; file A depends on file B of
the same folder when A needs a symbol B defines (a function or a variable). A strongly
connected group of two or more files is a cycle: each is printed with the symbols that tie
it, and the exit status is 1. Exit 2 when an object is missing (build first).
"""

import os
import subprocess
import sys


def symbols(obj):
    """(defined, undefined) global symbol names of one object file."""
    out = subprocess.run(["nm", "-P", obj], check=True, capture_output=True, text=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind.isupper():
            defined.add(name)
    return defined, undefined


def folder_graph(build, folder):
    """{file: {file it needs: [symbols]}} for the .c files of one folder."""
    sources = sorted(f for f in os.listdir(folder) if f.endswith(".c"))
    defs, needs = {}, {}
    for src in sources:
        obj = os.path.join(build, folder, src[:-2] + ".o")
        if not os.path.exists(obj):
            sys.stderr.write("callcycles: %s is missing: build first\n" % obj)
            sys.exit(2)
        defs[src], needs[src] = symbols(obj)
    owner = {}
    for src, names in defs.items():
        for name in names:
            owner[name] = src
    graph = {src: {} for src in sources}
    for src in sources:
        for name in sorted(needs[src]):
            dst = owner.get(name)
            if dst is not None and dst != src:
                graph[src].setdefault(dst, []).append(name)
    return graph


def cycles(graph):
    """The strongly connected groups of two or more nodes (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    build, folders = argv[1], argv[2:]
    bad = 0
    for folder in folders:
        graph = folder_graph(build, folder)
        for group in cycles(graph):
            bad += 1
            print("callcycles: a cycle in %s/: %s" % (folder, " ".join(group)))
            for src in group:
                for dst in group:
                    names = graph[src].get(dst)
                    if names:
                        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
                        print("    %s -> %s: %s" % (src, dst, shown))
    if bad:
        print("callcycles: %d cycle(s): move what the files share into a third file" % bad)
        return 1
    print("callcycles: no cycle between the files of %s" % ", ".join(folders))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
