"""Screenshot of Jupyter Lab running notebook cells on the `rust` kernel, taken headless.

The proof that README's first command ends where a reader starts: a Lab server (from `cargo xtask lab`), a
notebook opened in it, its outputs cleared, its first code cells run one by one on the evcxr kernel, and the
page captured once the last of them has printed. It drives a real browser with Playwright and the system's
Chromium, so it downloads nothing:

    apt-get install chromium                       # Debian's package (any Chromium or Chrome works)
    python3 -m venv /tmp/shot && /tmp/shot/bin/pip install playwright
    cargo xtask lab --no-browser --port 8899 -- --IdentityProvider.token=shot &
    /tmp/shot/bin/python xtask/runner/screenshot.py --url http://127.0.0.1:8899 --token shot \\
        --notebook 01-deep-neural-networks/01-dnn/02-dnn.ipynb --cells 4 \\
        --out assets/screenshots/jupyterlab-02-dnn.png

Exit status 0 when every cell ran and the picture was written; 1 (with the reason) otherwise.
"""

import argparse
import sys
import time

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    print("screenshot.py: needs Playwright (`pip install playwright`) and a Chromium", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the Lab server, e.g. http://127.0.0.1:8899")
    ap.add_argument("--token", default="", help="the server's token")
    ap.add_argument("--notebook", required=True, help="path under notebooks/")
    ap.add_argument("--cells", type=int, default=4, help="how many code cells to run, from the first")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="the browser executable")
    ap.add_argument("--timeout", type=float, default=300, help="seconds allowed per cell (the first compiles dlhist)")
    args = ap.parse_args()

    url = f"{args.url.rstrip('/')}/lab/tree/{args.notebook}?token={args.token}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1000}, device_scale_factor=1)
        # The notebook on disk must keep its committed outputs: Lab's autosave would write the cleared and
        # partly re-run copy back, so every save (a PUT to the contents API) is dropped on its way out.
        page.route("**/api/contents/**", lambda route: route.abort() if route.request.method == "PUT" else route.continue_())
        page.goto(url)
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
        wait_for_kernel_idle(page, 180)
        # Lab's first-run question about news would cover part of the notebook.
        no_news = page.get_by_role("button", name="No", exact=True)
        if no_news.count():
            no_news.first.click()
        # Start from a notebook without outputs, so every output in the picture is one this kernel printed.
        page.get_by_role("menuitem", name="Edit").click()
        page.get_by_text("Clear Outputs of All Cells", exact=True).click()
        code_cells = page.locator(".jp-Notebook .jp-CodeCell")
        wait_for_count(code_cells, args.cells, 60)
        if code_cells.count() < args.cells:
            sys.exit(f"screenshot.py: {args.notebook} has {code_cells.count()} code cells, fewer than {args.cells}")
        for i in range(args.cells):
            cell = code_cells.nth(i)
            cell.locator(".jp-InputPrompt").click()
            page.keyboard.press("Shift+Enter")
            prompt = wait_for_prompt(cell, args.timeout)
            error = cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            if error.count() > 0:
                sys.exit(f"screenshot.py: code cell {i + 1} failed: {error.first.inner_text()[:2000]}")
            print(f"code cell {i + 1} ran: {prompt}", flush=True)
        code_cells.nth(args.cells - 1).scroll_into_view_if_needed()
        # Let the status bar catch up with the kernel ("Idle").
        wait_for_kernel_idle(page, 60)
        page.screenshot(path=args.out)
        browser.close()
    print(f"wrote {args.out}")


def wait_for_count(locator, n, timeout):
    """Lab renders a long notebook's cells a few at a time: waits until at least `n` match."""
    deadline = time.time() + timeout
    while locator.count() < n and time.time() < deadline:
        time.sleep(0.5)


def wait_for_prompt(cell, timeout):
    """Waits until the cell's prompt shows an execution count ("[3]:"), not "[*]:" (running or queued)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = cell.locator(".jp-InputPrompt").inner_text().strip()
        if text.startswith("[") and text[1:-2].strip().isdigit():
            return text
        time.sleep(0.5)
    sys.exit(f"screenshot.py: a cell did not finish within {timeout} s")


def wait_for_kernel_idle(page, timeout):
    """Waits until the notebook's kernel status reads idle."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = page.locator(".jp-Notebook-ExecutionIndicator")
        if status.count() and status.first.get_attribute("data-status") == "idle":
            return
        time.sleep(0.5)
    sys.exit(f"screenshot.py: the kernel was not idle within {timeout} s")


if __name__ == "__main__":
    main()
