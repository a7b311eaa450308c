"""Headless notebook runner: executes notebooks through the real `rust` Jupyter kernel (evcxr_jupyter) with
nbclient, strictly, and writes a summary.

Start it through `cargo xtask notebooks run`, which picks the notebooks, the venv's Python and the kernel's
environment; `--help` lists the options. Exit status: 0 when every notebook passed, 1 when some failed,
2 for bad arguments, 3 when the runner itself broke.
"""

import argparse
import copy
import json
import os
import queue
import shutil
import tempfile
import sys
import time
import traceback
from pathlib import Path

import nbtools

try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbclient.util import ensure_async
except ImportError as err:  # the venv is missing or incomplete
    print(f"run_notebooks.py: {err}; run `cargo xtask setup`", file=sys.stderr)
    sys.exit(3)

KERNEL = "rust"
# How long the kernel must stay silent after a cell before its output counts as complete (see
# collect_late_output); about 0.2 s per code cell.
LATE_OUTPUT_QUIET_S = 0.2


class CellFailed(Exception):
    def __init__(self, index, message):
        super().__init__(message)
        self.index = index
        self.message = message


def prepare(nb, mode, device):
    """Returns the notebook to execute and, per executed cell, its index in the notebook on disk (None for the
    injected cell). Quick mode inserts the `injected-parameters` cell after the `parameters` cell; cuda mode
    adds the cuda feature to the setup cell's `:dep dlhist`."""
    run = copy.deepcopy(nb)
    origin = list(range(len(run.cells)))
    if mode == "quick":
        at, source = nbtools.quick_parameters(run)
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": [nbtools.INJECTED_TAG]})
        run.cells.insert(at + 1, cell)
        origin.insert(at + 1, None)
    if device == "cuda":
        code = [c for c in run.cells if c.cell_type == "code"]
        if code:
            code[0].source = nbtools.with_cuda_feature(nbtools.source_text(code[0]))
    return run, origin


async def collect_late_output(client, cell, execute_reply):
    """Adds to the cell the output that reaches us after its execution finished.

    evcxr_jupyter forwards the user code's stderr from a separate thread, not synchronized with the end of the
    cell, so the error text that a top-level `?` prints can arrive after the kernel went idle; nbclient would
    then drop it. Wait until the kernel has been quiet for LATE_OUTPUT_QUIET_S and keep what belongs to this
    cell."""
    parent = (execute_reply or {}).get("parent_header", {}).get("msg_id")
    while True:
        try:
            msg = await ensure_async(client.kc.get_iopub_msg(timeout=LATE_OUTPUT_QUIET_S))
        except queue.Empty:
            return
        if msg.get("parent_header", {}).get("msg_id") == parent and msg["msg_type"] == "stream":
            cell.outputs.append(nbformat.v4.output_from_msg(msg))


def run_notebook(path, args):
    """Executes one notebook; returns its summary row."""
    shown = os.path.relpath(path, args.root) if path.is_relative_to(args.root) else str(path)
    row = {"notebook": shown, "mode": args.mode, "device": args.device, "status": "passed", "wall_s": 0.0,
           "failed_cell": None, "error": None, "metrics": None, "output": None}
    print(f"== {shown} ({args.mode}, {args.device})", flush=True)
    start = time.monotonic()
    deadline = start + args.timeout
    nb = nbformat.read(path, as_version=4)
    try:
        run, origin = prepare(nb, args.mode if args.mode != "as-is" else None, args.device)
    except nbtools.NotebookError as err:
        row.update(status="failed", error=str(err))
        print(f"   FAILED: {err}", flush=True)
        return row

    cell_start = {}

    def on_cell_execute(cell, cell_index):
        cell_start[cell_index] = time.monotonic()

    async def on_cell_executed(cell, cell_index, execute_reply):
        took = time.monotonic() - cell_start.get(cell_index, start)
        await collect_late_output(client, cell, execute_reply)
        status = (execute_reply or {}).get("content", {}).get("status")
        failure = nbtools.cell_failure(cell, status)
        where = f"cell {origin[cell_index] + 1}" if origin[cell_index] is not None else "injected-parameters cell"
        print(f"   {where:>24}  {took:7.1f}s  {'FAILED' if failure else 'ok'}", flush=True)
        if failure:
            raise CellFailed(cell_index, failure)

    client = NotebookClient(
        run,
        kernel_name=KERNEL,
        # Per-notebook limit: each cell may use what is left of it.
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        allow_errors=True,  # on_cell_executed decides, so that every kind of failure is handled alike
        record_timing=False,  # no timestamps in committed notebooks: they would change on every run
        coalesce_streams=True,  # evcxr sends output line by line; store one stream output per cell and name
        resources={"metadata": {"path": str(path.parent)}},  # the kernel's working directory
        on_cell_execute=on_cell_execute,
        on_cell_executed=on_cell_executed,
    )
    # The kernel builds cells in the project's shared build folder (target/evcxr-kernel) when no other kernel
    # holds it, so consecutive notebooks start warm. When it is taken (a Jupyter Lab kernel), the kernel needs a
    # folder of its own, about 1 GB once dlhist is compiled there, which evcxr leaves behind when the kernel is
    # shut down from outside: give it one of ours as the fallback and remove it afterwards. A caller's
    # EVCXR_TMPDIR (CI shares the test harness's build that way) overrides both.
    own_tmpdir = None
    if "EVCXR_TMPDIR" not in os.environ:
        own_tmpdir = tempfile.mkdtemp(prefix="dlhist-evcxr-")
        os.environ["DLHIST_KERNEL_FALLBACK_DIR"] = own_tmpdir  # the kernel process inherits it
    try:
        client.execute()
    except CellFailed as failed:
        index = origin[failed.index]
        row.update(status="failed", failed_cell=index + 1 if index is not None else nbtools.INJECTED_TAG,
                   error=failed.message)
    except CellTimeoutError:
        row.update(status="timeout", error=f"did not finish within {args.timeout} s (--timeout)")
    except DeadKernelError as err:
        row.update(status="failed", error=f"the kernel died: {err}")
    except Exception as err:  # anything else from the kernel machinery: record it, go on with the next notebook
        row.update(status="failed", error=f"{type(err).__name__}: {err}")
    finally:
        if own_tmpdir is not None:
            del os.environ["DLHIST_KERNEL_FALLBACK_DIR"]
            shutil.rmtree(own_tmpdir, ignore_errors=True)
    row["wall_s"] = round(time.monotonic() - start, 1)

    code_cells = [c for c in run.cells if c.cell_type == "code"]
    if row["status"] == "passed" and code_cells:
        row["metrics"] = nbtools.metrics(code_cells[-1])  # the check cell reports them

    out_path = args.out / shown if not Path(shown).is_absolute() else args.out / path.name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(run, out_path)
    row["output"] = str(out_path)

    if args.in_place and row["status"] == "passed":
        write_back(nb, run, origin, path)
    if row["status"] != "passed":
        where = f" in cell {row['failed_cell']}" if row["failed_cell"] is not None else ""
        print(f"   {row['status'].upper()}{where}: {row['error']}", flush=True)
    return row


def write_back(nb, run, origin, path):
    """Full mode: the executed outputs go into the notebook on disk with its own sources (the cuda rewrite of the
    setup cell is not kept), and metadata.dlhist.code_sha256 marks which code produced them."""
    for executed, index in zip(run.cells, origin):
        if index is None:
            continue
        cell = nb.cells[index]
        if cell.cell_type == "code":
            cell.outputs = executed.outputs
            cell.execution_count = executed.get("execution_count")
    if "language_info" in run.metadata:
        nb.metadata["language_info"] = run.metadata["language_info"]
    nb.metadata.setdefault("dlhist", {})["code_sha256"] = nbtools.code_sha256(nb)
    nbformat.write(nb, path)


def print_table(rows):
    headers = ["notebook", "status", "wall_s", "failed_cell", "metrics"]
    table = [[r["notebook"], r["status"], f"{r['wall_s']:.1f}",
              "" if r["failed_cell"] is None else str(r["failed_cell"]),
              "" if r["metrics"] is None else json.dumps(r["metrics"], separators=(",", ":"))] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(headers)]
    for line in [headers, ["-" * w for w in widths], *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


def parse_args(argv):
    p = argparse.ArgumentParser(description="Execute notebooks through the `rust` Jupyter kernel, strictly.")
    p.add_argument("--mode", choices=["quick", "full", "as-is"], default="quick",
                   help="quick: inject metadata.dlhist.quick after the parameters cell; full: the reader's values; "
                        "as-is: run the cells unchanged")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--timeout", type=int, default=1200, help="per-notebook limit in seconds")
    p.add_argument("--summary", type=Path, required=True, help="JSON summary to write")
    p.add_argument("--out", type=Path, required=True, help="folder for the executed notebooks")
    p.add_argument("--root", type=Path, default=Path.cwd(), help="project root: notebook names are shown relative to it")
    p.add_argument("--in-place", action="store_true", help="write each passing notebook back with its outputs")
    p.add_argument("notebooks", type=Path, nargs="+")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    args.root = args.root.resolve()
    if args.device == "cuda":
        os.environ["DLHIST_DEVICE"] = "cuda"  # the kernel inherits it; dlhist::device() reads it
    if not args.in_place and "DLHIST_ASSETS_DIR" not in os.environ:
        # Only a run that writes the notebooks back may replace the committed figures under assets/; the
        # figures of a quick run go next to its executed notebooks (dlhist::notebook::asset_path reads this).
        os.environ["DLHIST_ASSETS_DIR"] = str((args.out / "assets").resolve())
    started = time.monotonic()
    rows = [run_notebook(path.resolve(), args) for path in args.notebooks]
    total = round(time.monotonic() - started, 1)
    print()
    print_table(rows)
    failed = sum(r["status"] != "passed" for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed, {total:.1f}s in all")
    summary = {"mode": args.mode, "device": args.device, "total_wall_s": total, "passed": len(rows) - failed,
               "failed": failed, "notebooks": rows}
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"summary: {args.summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception:
        traceback.print_exc()
        sys.exit(3)
