"""Build the book and open every chapter page in headless Chromium.

The HTML build (Jupyter Book 1.x, ``--warningiserror``, no notebook executed)
takes a few seconds, so the test builds a fresh copy into a temporary folder
every run: it always checks the current sources, and a Sphinx warning fails
it.  Set ``EMPIR_BOOK_HTML=_build/html`` to check an existing build instead.

Each page listed in ``_toc.yml`` must exist, load, show every image (an ``img``
whose ``naturalWidth`` is 0 did not decode), show at least as many images as
its notebook has stored figures, typeset every equation (MathJax is served
from the book's ``_static``, so raw TeX means the offline set-up broke), and
contain no Sphinx error marker and no figure that fell back to its text form
(``<Figure size ...>``), and show no launch button (Binder, Colab, repository)
while ``repository.url`` in ``_config.yml`` is the placeholder: a button
must work or not be there.  One screenshot per page goes to
``_build/screenshots/``.

Chromium is driven through its DevTools protocol (``websocket-client``).  It
is found as ``$EMPIR_CHROMIUM``, ``chromium``, ``chromium-browser`` or
``google-chrome``; if it is missing the test fails, unless
``EMPIR_SKIP_BROWSER=1`` says to skip it.  Every host name is mapped to
"not found", so the check also proves the book renders offline.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml

from empir_lib.book import launch

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "_build" / "screenshots"
PAGE_TIMEOUT_S = 30
INSTALL_HINT = ("install it with 'apt-get install -y chromium' (Debian) or point EMPIR_CHROMIUM at a "
                "Chromium/Chrome binary; set EMPIR_SKIP_BROWSER=1 to skip this test")


def toc_pages() -> list[str]:
    """Every page of the book, as its source path without suffix (root first)."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    pages += [c["file"] for c in toc.get("chapters", [])]
    return pages


def stored_figures(page: str) -> int:
    """How many image outputs the page's notebook stores (0 for a Markdown page)."""
    path = REPO / f"{page}.ipynb"
    if not path.exists():
        return 0
    nb = nbformat.read(path, as_version=4)
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if any(k.startswith("image/") for k in o.get("data", {})))


def unavailable(reason: str):
    if os.environ.get("EMPIR_SKIP_BROWSER") == "1":
        pytest.skip(f"browser check skipped (EMPIR_SKIP_BROWSER=1): {reason}")
    pytest.fail(f"{reason}; {INSTALL_HINT}.", pytrace=False)


def chromium_binary() -> str:
    for name in (os.environ.get("EMPIR_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    unavailable("no Chromium found (tried $EMPIR_CHROMIUM, chromium, chromium-browser, google-chrome)")


# --- the build ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def book_html(tmp_path_factory) -> Path:
    """The built HTML: a fresh build (the default) or $EMPIR_BOOK_HTML."""
    given = os.environ.get("EMPIR_BOOK_HTML")
    if given:
        html = Path(given) if Path(given).is_absolute() else REPO / given
        if not (html / "index.html").is_file():
            pytest.fail(f"EMPIR_BOOK_HTML={given} holds no index.html; run 'make book' first.", pytrace=False)
        return html
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).parent / "jupyter-book"
    jb = str(jb) if jb.exists() else shutil.which("jupyter-book")
    if jb is None:
        pytest.fail("jupyter-book is not installed; install the book extra: pip install -e '.[book,test]'.",
                    pytrace=False)
    cmd = [jb, "build", str(REPO), "--path-output", str(out), "--warningiserror", "--keep-going"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 or "WARNING" in log:
        pytest.fail(f"the book build failed or warned ({' '.join(cmd)}):\n{log[-6000:]}", pytrace=False)
    print(f"book built in {time.perf_counter() - t0:.1f} s")
    return out / "_build" / "html"


# --- a minimal DevTools-protocol client ------------------------------------------------


def cdp(conn, method: str, **params):
    """Send one DevTools command and wait for its answer; events that arrive meanwhile are kept."""
    conn.counter += 1
    msg_id = conn.counter
    conn.send(json.dumps({"id": msg_id, "method": method, "params": params}))
    while True:
        msg = json.loads(conn.recv())
        if msg.get("id") == msg_id:
            if "error" in msg:
                raise RuntimeError(f"{method}: {msg['error']}")
            return msg.get("result", {})
        if "method" in msg:
            conn.events.append(msg["method"])


def wait_for_event(conn, name: str, timeout: float) -> None:
    # The event may have arrived while cdp() waited for a command's answer.
    if name in conn.events:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        conn.settimeout(max(0.1, end - time.monotonic()))
        if json.loads(conn.recv()).get("method") == name:
            return
    raise TimeoutError(f"no {name} within {timeout} s")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium with a fresh profile, and a DevTools connection to its page."""
    binary = chromium_binary()
    try:
        import websocket  # websocket-client
    except ImportError:
        unavailable("the Python package websocket-client is not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")
    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "--window-size=1280,1000", "--hide-scrollbars",
            # No page may depend on the network: any CDN request just fails.
            "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > end:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.poll() is not None else ""
                pytest.fail(f"Chromium did not start ({binary}):\n{err}", pytrace=False)
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        conn = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=PAGE_TIMEOUT_S,
                                           suppress_origin=True)
        conn.counter, conn.events = 0, []
        cdp(conn, "Page.enable")
        yield conn
        conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


PAGE_REPORT = """(() => {
  const imgs = [...document.images].map(i => ({
    src: i.getAttribute('src'), width: i.naturalWidth, complete: i.complete,
    output: !!i.closest('.cell_output')}));
  const main = document.querySelector('main') || document.body;
  return JSON.stringify({
    title: document.title,
    h1: (main.querySelector('h1') || {}).textContent || '',
    images: imgs,
    problems: document.querySelectorAll('.problematic, .system-message').length,
    launch: [...document.querySelectorAll('.dropdown-launch-buttons a, a[href*="mybinder.org"], '
             + 'a[href*="colab.research.google.com"], a[href^="PLACEHOLDER_URL"]')].map(a => a.href),
    figureAsText: main.innerText.includes('<Figure size'),
    // Code cells and tables wider than the content column: cut off, or scrolled sideways (a table's
    // wrapper scrolls when the table is wider than it).
    overflow: [...main.querySelectorAll('div.cell_input pre, table')].filter(e => {
      const box = (e.closest('.bd-article, article') || main).getBoundingClientRect();
      const holder = e.tagName === 'TABLE' ? e.parentElement : e;
      return holder.scrollWidth > holder.clientWidth + 2 || e.scrollWidth > e.clientWidth + 2
        || e.getBoundingClientRect().right > box.right + 2;
    }).map(e => e.tagName + ': ' + e.textContent.trim().slice(0, 60)),
    height: document.documentElement.scrollHeight});
})()""".replace("PLACEHOLDER_URL", launch.PLACEHOLDER_URL)


def open_page(conn, url: str) -> dict:
    conn.settimeout(PAGE_TIMEOUT_S)
    conn.events.clear()
    cdp(conn, "Page.navigate", url=url)
    wait_for_event(conn, "Page.loadEventFired", PAGE_TIMEOUT_S)
    conn.settimeout(PAGE_TIMEOUT_S)
    return json.loads(cdp(conn, "Runtime.evaluate", expression=PAGE_REPORT, returnByValue=True)["result"]["value"])


MATH_REPORT = """(() => JSON.stringify({
  math: document.querySelectorAll('span.math, div.math').length,
  mathjax: !!(window.MathJax && window.MathJax.Hub),
  raw: [...document.querySelectorAll('span.math, div.math')]
         .filter(e => /\\\\[(\\[]/.test(e.textContent)).length}))()"""


def math_report(conn, timeout: float = 20) -> dict:
    """Wait for MathJax (served from the book, not a CDN) to typeset every equation on the page."""
    end = time.monotonic() + timeout
    while True:
        r = json.loads(cdp(conn, "Runtime.evaluate", expression=MATH_REPORT, returnByValue=True)["result"]["value"])
        if r["math"] == 0 or (r["mathjax"] and r["raw"] == 0) or time.monotonic() > end:
            return r
        time.sleep(0.25)


def screenshot(conn, path: Path, height: int) -> None:
    """The whole page (capped at 12000 px), so every figure is on it."""
    h = min(max(height, 1000), 12000)
    # A viewport as tall as the page: the theme lays the page out as a reader sees it.
    cdp(conn, "Emulation.setDeviceMetricsOverride", width=1280, height=h, deviceScaleFactor=1, mobile=False)
    try:
        shot = cdp(conn, "Page.captureScreenshot", format="png")
    finally:
        cdp(conn, "Emulation.clearDeviceMetricsOverride")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_book_builds_without_warnings(book_html):
    # The fixture fails on any Sphinx warning; this test keeps that check visible
    # (and running) even when the browser part is skipped.
    assert (book_html / "index.html").is_file()
    missing = [p for p in toc_pages() if not (book_html / f"{p}.html").is_file()]
    assert not missing, f"pages in _toc.yml missing from the build: {missing}"


@pytest.mark.parametrize("page", toc_pages())
def test_page_renders(book_html, browser, page):
    html = book_html / f"{page}.html"
    assert html.is_file(), f"{page}: no page {html} in the build"
    report = open_page(browser, html.as_uri())
    math = math_report(browser)  # before the screenshot, so it shows typeset equations
    screenshot(browser, SCREENSHOTS / f"{page.replace('/', '__')}.png", report["height"])
    if math["math"]:
        assert math["mathjax"], f"{page}: MathJax did not load (it must come from _static, offline)"
        assert math["raw"] == 0, f"{page}: {math['raw']} of {math['math']} equations still show raw TeX"

    assert report["h1"].strip(), f"{page}: the page has no title heading"
    broken = [i["src"] for i in report["images"] if not i["complete"] or i["width"] == 0]
    assert not broken, f"{page}: images that did not load: {broken}"
    shown = sum(i["output"] for i in report["images"])
    expected = stored_figures(page)
    assert shown >= expected, f"{page}: the notebook stores {expected} figures but the page shows {shown}"
    assert not report["figureAsText"], f"{page}: a figure was rendered as text ('<Figure size ...>')"
    assert report["problems"] == 0, f"{page}: {report['problems']} Sphinx error markers on the page"
    assert not report["overflow"], f"{page}: code cells or tables wider than the page at 1280 px: {report['overflow']}"
    if launch.repository_url() is None:
        assert not report["launch"], f"{page}: launch links while repository.url is the placeholder: {report['launch']}"


LAUNCH_MARKERS = ("dropdown-launch-buttons", "mybinder.org", "colab.research.google.com", launch.PLACEHOLDER_URL)


def test_no_launch_buttons_while_the_repository_is_a_placeholder(book_html):
    # Static HTML, so this runs without Chromium too.  With a real repository.url the buttons are
    # there (tests/test_launch.py checks the build hook both ways).
    if launch.repository_url() is not None:
        pytest.skip(f"repository.url is set ({launch.repository_url()}): launch buttons are expected")
    found = {p: [m for m in LAUNCH_MARKERS if m in (book_html / f"{p}.html").read_text()] for p in toc_pages()}
    found = {p: m for p, m in found.items() if m}
    assert not found, f"pages with launch buttons or the placeholder repository: {found}"
