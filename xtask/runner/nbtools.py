"""Notebook helpers for the runner that need only Python's standard library.

They work on notebooks as plain dicts (nbformat's NotebookNode is a dict too), so any python3 can run
`python3 nbtools.py hash NOTEBOOK.ipynb`, which a Rust test in xtask uses to check that this code hash and
xtask's agree.
"""

import hashlib
import json
import re
import sys

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
METRICS_PREFIX = "dlhist-metrics: "

# Markers of a failure in a cell's text output. A panic prints "thread '...' panicked at FILE:LINE:COL:",
# and a failed assert!/assert_eq! is a panic with that same line. evcxr reports an error that a top-level `?`
# returned by printing the error's Display text alone to stderr; nothing marks it, so any stderr text counts
# (see cell_failure below).
PANIC_RE = re.compile(r"panicked at")
# The setup cell's `:dep dlhist = { ... }` line, to add the cuda feature.
DEP_DLHIST_RE = re.compile(r"^([ \t]*:dep[ \t]+dlhist[ \t]*=[ \t]*\{)(.*)\}[ \t]*$", re.MULTILINE)
FEATURES_RE = re.compile(r"features\s*=\s*\[")
# A binding of the parameters cell: `let name: Type = value;` (CONTRIBUTING.md requires the type, so an injected
# quick value keeps it: `let n = 200;` alone would make an i32).
LET_RE = re.compile(r"^\s*let\s+(?:mut\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^=]+?)\s*=", re.MULTILINE)
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookError(Exception):
    """The notebook breaks a convention the runner relies on (see CONTRIBUTING.md)."""


def source_text(cell):
    """A cell's source as one string: nbformat stores a string or a list of lines, joined as they are."""
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def code_sha256(nb):
    """Lowercase hex SHA-256 over the code cells in order, skipping `injected-parameters` ones: each cell's
    source text (UTF-8) followed by one NUL byte. Stored as metadata.dlhist.code_sha256 by `--full`."""
    digest = hashlib.sha256()
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code" and INJECTED_TAG not in tags(cell):
            digest.update(source_text(cell).encode("utf-8"))
            digest.update(b"\0")
    return digest.hexdigest()


def quick_parameters(nb):
    """Returns (index of the `parameters` cell, source of the `injected-parameters` cell to insert after it).

    The source holds `let <name>: <Type> = <value>;` for each entry of metadata.dlhist.quick, in the stored order,
    with the type copied from the parameters cell."""
    indices = [i for i, c in enumerate(nb["cells"]) if c.get("cell_type") == "code" and PARAMETERS_TAG in tags(c)]
    if len(indices) != 1:
        raise NotebookError(f"needs exactly one code cell tagged `{PARAMETERS_TAG}`, found {len(indices)}")
    quick = nb.get("metadata", {}).get("dlhist", {}).get("quick")
    if not isinstance(quick, dict) or not all(isinstance(v, str) for v in quick.values()):
        raise NotebookError("metadata.dlhist.quick must map binding names to Rust expressions (strings)")
    bound = dict(LET_RE.findall(source_text(nb["cells"][indices[0]])))
    unknown = [name for name in quick if name not in bound]
    if unknown:
        raise NotebookError(f"metadata.dlhist.quick names {unknown}, which the parameters cell does not bind")
    lines = [f"let {name}: {bound[name]} = {value};" for name, value in quick.items()]
    return indices[0], "\n".join(lines)


def with_cuda_feature(source):
    """Adds the cuda feature to a `:dep dlhist = { ... }` line: `features = ["cuda"]`, or "cuda" first in an
    existing features list."""

    def add(match):
        inner = match.group(2).rstrip()
        if '"cuda"' in inner:
            return match.group(0)
        if FEATURES_RE.search(inner):
            return match.group(1) + FEATURES_RE.sub(r'\g<0>"cuda", ', inner, count=1) + " }"
        sep = ", " if inner.strip() else " "
        return f'{match.group(1)}{inner}{sep}features = ["cuda"] }}'

    return DEP_DLHIST_RE.sub(add, source)


def clean(text):
    """Drops terminal colour codes, which evcxr puts in compile errors."""
    return ANSI_RE.sub("", text)


def output_text(cell, name=None):
    """The concatenated text of a cell's stream outputs (only `stdout` or `stderr` when `name` is given)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and (name is None or out.get("name") == name):
            parts.append(out.get("text", "") if isinstance(out.get("text"), str) else "".join(out["text"]))
    return "".join(parts)


def error_outputs(cell):
    """The text of a cell's `error` outputs (ename: evalue and traceback)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            head = f"{out.get('ename', '')}: {out.get('evalue', '')}".strip(": ")
            body = "\n".join(out.get("traceback", []))
            parts.append("\n".join(p for p in (head, body) if p))
    return clean("\n".join(parts))


def panic_message(text):
    """The panic's own lines, from "panicked at" to the backtrace (or the note about RUST_BACKTRACE)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if PANIC_RE.search(line):
            message = [line]
            for following in lines[i + 1:]:
                if following.startswith(("stack backtrace:", "note: ")):
                    break
                message.append(following)
            return "\n".join(message).strip()
    return None


def cell_failure(cell, reply_status):
    """Why an executed cell failed, or None when it passed.

    Fails when any output shows a panic (a failed assert! is one), when the kernel replied with an error
    (compile errors; the crash a panic causes with preserve_vars_on_panic = false), or when the cell wrote to
    stderr: evcxr prints a top-level `?` error only as the error's text on stderr and reports success, and
    notebooks print their progress on stdout (Jupyter shows stderr on red), so stderr text means trouble."""
    panic = panic_message(clean(output_text(cell)))
    if panic:
        return "panic: " + panic
    stderr = clean(output_text(cell, "stderr")).strip()
    errors = error_outputs(cell).strip()
    if reply_status == "error" or errors:
        return errors or stderr or "the kernel reported an error"
    if stderr:
        return "the cell wrote to stderr (a top-level `?` error, or an eprintln!):\n" + stderr
    return None


def metrics(cell):
    """The JSON object of the last `dlhist-metrics: {...}` line in the cell's stdout, or None."""
    found = None
    for line in output_text(cell, "stdout").splitlines():
        if line.startswith(METRICS_PREFIX):
            try:
                found = json.loads(line[len(METRICS_PREFIX):])
            except json.JSONDecodeError:
                found = {"unparsed": line[len(METRICS_PREFIX):]}
    return found


def _main(argv):
    if len(argv) == 3 and argv[1] == "hash":
        with open(argv[2], encoding="utf-8") as f:
            print(code_sha256(json.load(f)))
        return 0
    print(f"usage: {argv[0]} hash NOTEBOOK.ipynb", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
