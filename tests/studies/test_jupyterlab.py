"""JupyterLab is the front door: in a real (headless) Chromium, a notebook opens in JupyterLab on the project's
"Python (veralab)" kernel, Run All runs every cell without an error or a stderr box, and a figure renders: the
quickstart's, and the rank sweep's and the initialization ablation's, each in a fresh checkout's layout (no runs yet)
ending in the committed study with the run just trained drawn on it.

Debian's `chromium` and `chromium-driver` drive it through Selenium (`make system-data` installs them when root); the
test is skipped, with the reason, only where they cannot be found. JupyterLab serves a copy of the notebook from a
temporary folder (autosave writes there, never to notebooks/), and JupyterLab, its kernels and the browser are always
stopped at the end, also when the test fails.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# notebook -> what its output must say (besides a rendered figure): the study notebooks draw the run Run All trained
# on the committed study
NOTEBOOKS = {"00_quickstart": [],
             "01_rank_sweep": ["the study: 69 records from", "yours, drawn on it as black crosses: 1 records"],
             "02_init_ablation": ["the study: 69 records from", "yours, drawn on it as black crosses: 1 records"]}
KERNEL_NAME = "veralab"
KERNEL_DISPLAY_NAME = "Python (veralab)"
JUPYTER = Path(sys.executable).with_name("jupyter")
RUN_TIMEOUT_S = 600  # the quickstart trains MiniLM for a few steps (half a minute on 2 idle cores), a study notebook
# one default-profile run (one to two minutes)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMEDRIVER_PATHS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/lib/chromium-browser/chromedriver")

# JupyterLab user settings for the test: every cell in the DOM (no windowing, so all prompts can be read), no
# autosave, no news or update notifications over the page.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}

# What the page shows, read with textContent (independent of what is scrolled into view).
READ_CELLS_JS = """
const panel = document.querySelector('.jp-NotebookPanel');
if (!panel) return null;
const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell.jp-CodeCell')].map((cell, i) => {
  const prompt = cell.querySelector('.jp-InputArea-prompt');
  const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
    mime: o.getAttribute('data-mime-type') || '',
    text: (o.textContent || '').trim().slice(0, 2000),
    images: [...o.querySelectorAll('img')].map(img => img.complete && img.naturalWidth > 0 ? img.naturalWidth : 0),
  }));
  const source = (cell.querySelector('.jp-InputArea-editor') || cell).textContent.trim().slice(0, 80);
  return {index: i, prompt: prompt ? prompt.textContent.trim() : '', source, outputs};
});
const kernel = panel.querySelector('.jp-Toolbar-kernelName');
const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
const dialogs = [...document.querySelectorAll('.jp-Dialog')].map(d => d.textContent.trim().slice(0, 500));
return {cells, kernel: kernel ? kernel.textContent.trim() : null,
        status: indicator ? indicator.getAttribute('data-status') : null, dialogs};
"""


def _find_browser():
    chromium = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = next((p for p in map(shutil.which, CHROMEDRIVER_PATHS) if p), None)
    if chromium is None or driver is None:
        missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None]
        pytest.skip(f"{' and '.join(missing)} not found: install Debian's chromium and chromium-driver "
                    "(`make system-data` does, as root) to run the JupyterLab browser test")
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop_process_tree(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM JupyterLab (it shuts its kernels down), then SIGKILL whatever of its tree is still there."""
    try:
        tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = [proc.pid]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pid in tree:
        try:
            p = psutil.Process(pid)
            p.kill()
            p.wait(5)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass


def _git_status_notebooks() -> str | None:
    """notebooks/' git status, ignored files (.ipynb_checkpoints/) included; None outside a git work tree."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "--", "notebooks"],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@pytest.fixture(params=list(NOTEBOOKS))
def notebook_copy(request, tmp_path):
    """A fresh checkout's layout under a temporary root (the notebooks, pyproject.toml and the committed default
    study; no runs yet): JupyterLab saves (and checkpoints) there and the notebooks write their runs there, never in
    the repository. notebooks/' git status must be the same afterwards (compared as status lines, not contents, so an
    edit someone makes to an already modified notebook while the test runs is not taken for the test's).
    """
    before = _git_status_notebooks()
    root = tmp_path / "root"
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO / "results" / "default", root / "results" / "default")
    yield root, request.param
    after = _git_status_notebooks()
    assert after == before, f"the test changed notebooks/ in the repository:\nbefore:\n{before}\nafter:\n{after}"


@pytest.fixture
def lab(notebook_copy, tmp_path):
    root, notebook = notebook_copy
    """JupyterLab as `make lab` starts it (no MPLBACKEND, so plots are inline), on a free port with a random token."""
    for name, values in LAB_SETTINGS.items():
        path = tmp_path / "lab-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        # Only the venv's kernels and settings: no user config (passwords, other defaults), no kernel of the same
        # name in ~/.local shadowing the venv's, nothing written to the home folder.
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"),
        TMPDIR=str(tmp_path / "tmp"),  # the quickstart's saved adapter goes here
    )
    kernels = json.loads(subprocess.run([str(JUPYTER), "kernelspec", "list", "--json"], env=env, capture_output=True,
                                        text=True, check=True).stdout)["kernelspecs"]
    assert KERNEL_NAME in kernels, f"no {KERNEL_NAME!r} kernel (have {sorted(kernels)}): run `make setup`"
    assert kernels[KERNEL_NAME]["spec"]["display_name"] == KERNEL_DISPLAY_NAME, kernels[KERNEL_NAME]
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
            + (["--allow-root"] if os.geteuid() == 0 else []),
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode} before answering:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer on {base} within 90 s:\n{_tail(log)}")
            time.sleep(0.5)
        yield {"base": base, "token": token, "log": log, "root": root, "notebook": notebook}
    finally:
        _stop_process_tree(proc)


@pytest.fixture
def browser(tmp_path):
    chromium, driver_path = _find_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(120)
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()


def _describe(state, screenshot) -> str:
    if state is None:
        return f"no notebook panel on the page; screenshot: {screenshot}"
    lines = [f"kernel: {state['kernel']!r}, status: {state['status']!r}, screenshot: {screenshot}"]
    lines += [f"dialog: {d}" for d in state["dialogs"]]
    for cell in state["cells"]:
        lines.append(f"cell {cell['index']} {cell['prompt']} {cell['source']!r}")
        for o in cell["outputs"]:
            images = f" images={o['images']}" if o["images"] else ""
            lines.append(f"    [{o['mime']}]{images} {o['text'][:600]!r}")
    return "\n".join(lines)


def test_run_all_in_jupyterlab(browser, lab, tmp_path):  # browser first: a skip starts no JupyterLab
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    screenshot = tmp_path / f"jupyterlab-{lab['notebook']}.png"

    def state():
        return browser.execute_script(READ_CELLS_JS)

    def fail(message):
        try:
            browser.save_screenshot(str(screenshot))
        except Exception:  # noqa: BLE001 - the diagnostics must not hide the failure
            pass
        pytest.fail(f"{message}\n{_describe(state(), screenshot)}\n--- JupyterLab log:\n{_tail(lab['log'], 3000)}")

    def wait_for(condition, timeout, message, poll=0.5):
        try:
            return WebDriverWait(browser, timeout, poll_frequency=poll).until(lambda _: condition())
        except Exception as err:  # noqa: BLE001 - TimeoutException, or the page going away
            fail(f"{message} ({type(err).__name__})")

    start = time.monotonic()
    browser.get(f"{lab['base']}/lab/tree/notebooks/{lab['notebook']}.ipynb?token={lab['token']}")
    wait_for(lambda: (s := state()) and s["cells"] and (s["kernel"] or s["dialogs"]), 120,
             "the notebook did not open in JupyterLab")

    # A kernel picker (the notebook names a kernel JupyterLab does not know): choose the project's kernel.
    dialogs = browser.find_elements(By.CSS_SELECTOR, ".jp-Dialog")
    if dialogs and "Select Kernel" in dialogs[0].text:
        Select(dialogs[0].find_element(By.TAG_NAME, "select")).select_by_visible_text(KERNEL_DISPLAY_NAME)
        dialogs[0].find_element(By.CSS_SELECTOR, ".jp-Dialog-button.jp-mod-accept").click()

    wait_for(lambda: (s := state())["kernel"] == KERNEL_DISPLAY_NAME and s["status"] == "idle" and not s["dialogs"],
             120, f"the notebook did not come up idle on the {KERNEL_DISPLAY_NAME!r} kernel")
    cells = state()["cells"]
    assert len(cells) >= 3, _describe(state(), screenshot)

    # Run > Run All Cells, as a person would.
    browser.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook").click()
    run_menu = [m for m in browser.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if m.text.strip() == "Run"]
    if not run_menu:
        fail("no Run menu in JupyterLab's menu bar")
    run_menu[0].click()
    item = wait_for(lambda: next((e for e in browser.find_elements(By.CSS_SELECTOR, ".lm-Menu .lm-Menu-item")
                                  if e.is_displayed() and e.text.strip().startswith("Run All Cells")), None),
                    10, "no 'Run All Cells' in the Run menu")
    item.click()
    opened = time.monotonic()

    # Done when the kernel is idle and no cell is queued or running ([*]) twice in a row; then every prompt must be
    # a number. An error stops Run All early, so this also returns early, and the checks below say what happened.
    def started():
        return any(c["prompt"] != "[ ]:" for c in state()["cells"])

    wait_for(started, 60, "Run All Cells did not start any cell")
    settled = []

    def finished():
        s = state()
        quiet = s["status"] == "idle" and not any("*" in c["prompt"] for c in s["cells"])
        settled.append(quiet)
        return len(settled) >= 2 and settled[-1] and settled[-2]

    wait_for(finished, RUN_TIMEOUT_S, f"the notebook did not finish within {RUN_TIMEOUT_S} s", poll=1.0)
    final = state()
    ran = time.monotonic()
    browser.execute_script("const imgs = document.querySelectorAll('.jp-OutputArea-output img');"
                           "if (imgs.length) imgs[imgs.length - 1].scrollIntoView({block: 'center'});")
    time.sleep(0.5)
    browser.save_screenshot(str(screenshot))
    if os.environ.get("VERALAB_SCREENSHOTS"):  # a folder to keep the screenshots in, to look at them
        shutil.copy2(screenshot, Path(os.environ["VERALAB_SCREENSHOTS"]) / screenshot.name)
    report = f"{_describe(final, screenshot)}\n--- JupyterLab log:\n{_tail(lab['log'], 3000)}"

    not_run = [c["index"] for c in final["cells"] if not re.fullmatch(r"\[\d+\]:", c["prompt"])]
    assert not not_run, f"code cells {not_run} did not run (of {len(final['cells'])})\n{report}"
    errors = [(c["index"], o["text"][:300]) for c in final["cells"] for o in c["outputs"]
              if "stderr" in o["mime"] or "error" in o["mime"] or "Traceback" in o["text"]]
    assert not errors, f"error or stderr outputs in cells {[i for i, _ in errors]}: {errors}\n{report}"
    assert final["kernel"] == KERNEL_DISPLAY_NAME, report
    assert not final["dialogs"], f"a dialog is open\n{report}"
    figures = [c["index"] for c in final["cells"] for o in c["outputs"] if any(w > 0 for w in o["images"])]
    assert figures, f"no rendered figure (an <img> in an output area) in any cell\n{report}"
    last = " ".join(o["text"] for o in final["cells"][figures[-1]]["outputs"])
    missing = [text for text in NOTEBOOKS[lab["notebook"]] if text not in last]
    assert not missing, f"the last figure's cell does not say {missing}\n{report}"
    if NOTEBOOKS[lab["notebook"]]:  # the run it trained is in the checkout's runs/, and its figure draws it
        assert len(list((lab["root"] / "runs").glob("*/record.json"))) == 1, report
        from veralab.studies import figures
        from veralab.studies.notebook import load_records

        frame = load_records(lab["root"] / "runs", committed=lab["root"] / "results" / "default")
        figure = {"01_rank_sweep": figures.rank_sweep_figure, "02_init_ablation": figures.init_ablation_figure}
        legends = [t.get_text() for ax in figure[lab["notebook"]](frame).axes if ax.get_legend()
                   for t in ax.get_legend().get_texts()]
        assert "your runs (n=1)" in legends and not [t for t in legends if t.startswith("not drawn")], legends
    print(f"{lab['notebook']} ran in JupyterLab on {KERNEL_DISPLAY_NAME!r}: {len(final['cells'])} code cells, "
          f"figures in cells {figures}; page and kernel up in {opened - start:.0f} s, Run All took {ran - opened:.0f} s")
