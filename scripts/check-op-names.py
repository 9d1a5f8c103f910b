#!/usr/bin/env python3
"""Checks that an op's name is spelled only in its own schema file (or, for names other code needs,
once in Sources/GraphIR/Core/OpType.swift): builders, gradient rules and passes say `OpType.conv`,
not "Conv". The ONNX importer/exporter is exempt, and so is Sources/kernel-benchmarks, which (like the
tests) drives single ops by name the way an ONNX file does. Exits 1 naming each stray literal.

    scripts/check-op-names.py            (from the repository root)
"""
import collections, glob, os, re, sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
files = sorted(glob.glob("Sources/**/*.swift", recursive=True))
source = {f: open(f, encoding="utf-8").read() for f in files}

# Where each op is declared: the file holding its OpSchema (or the table entry that makes one).
declaration = re.compile(
    r'OpSchema\("([A-Z][A-Za-z0-9]+)"'
    r'|(?:numeric|float|reduceSchema|softmaxSchema|poolSchema)\("([A-Z][A-Za-z0-9]+)"'
    r'|\(\s*"([A-Z][A-Za-z0-9]+)",\s*(?:ArithOp|CompareOp|LogicOp|\.)')
vocabulary = "Sources/GraphIR/Core/OpType.swift"
home = collections.defaultdict(set)
for f, s in source.items():
    if f.startswith("Sources/Runtime/Ops/"):
        for m in declaration.finditer(s):
            home[next(g for g in m.groups() if g)].add(f)
for m in re.finditer(r'= "([A-Z][A-Za-z0-9]+)"', source.get(vocabulary, "")):
    home[m.group(1)].add(vocabulary)

stray = []
for f, s in source.items():
    if f.startswith(("Sources/GraphIR/ONNX/", "Sources/kernel-benchmarks/")):
        continue
    for n, line in enumerate(s.splitlines(), 1):
        for m in re.finditer(r'"([A-Z][A-Za-z0-9]+)"', line):
            name = m.group(1)
            if name in home and f not in home[name]:
                stray.append(f"{f}:{n}: op name \"{name}\" (declared in {', '.join(sorted(home[name]))}); use OpType")
for line in stray:
    print(line)
print(f"op names: {len(home)} ops, {len(stray)} stray literals")
sys.exit(1 if stray else 0)
