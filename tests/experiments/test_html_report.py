"""report.html on a synthetic run directory: self-contained, escaped, and (where a Chromium binary exists) loaded
in headless Chromium without console errors, every plot rendered with a non-zero size."""
import csv
import json
import re
import shutil
import subprocess

import pytest
import yaml

from evograd.experiments import html_report
from evograd.experiments.report import report, summarize
from evograd.experiments.runmeta import RUN_META, machine, read_run_meta, record_session

HEADER = ["method", "seed", "generation", "env_steps", "eval_env_steps", "wall_s", "return_mean", "return_max",
          "eval_return", "eval_return_std"]
HOSTILE_LABEL = "<img src=x onerror=alert(1)>"  # a directory name: no "/" possible
HOSTILE_ERROR = "<script>alert(1)</script> RuntimeError: env exploded"
HOSTILE_NAME = "</title><script>alert(2)</script>"
# (label, seed) -> [(env_steps, wall_s, eval_return)]; None: the job failed after these rows
RUNS = {("cmaes", 0): [(0, 0.0, 10), (1000, 1.0, 60), (2000, 2.0, 110)],
        ("cmaes", 1): [(0, 0.0, 5), (1000, 1.2, 90), (2000, 2.4, 120)],
        (HOSTILE_LABEL, 0): [(0, 0.0, 0), (1000, 0.5, 40), (2000, 1.0, 101)],
        (HOSTILE_LABEL, 1): [(0, 0.0, 0), (1000, 0.5, 30)]}


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    cfg = {"name": HOSTILE_NAME, "task": {"env": {"id": "CartPole-v1"}}, "budget": {"env_steps": 2000},
           "threshold": 100.0, "seeds": 2, "methods": {"cmaes": {"name": "cmaes", "note": "<b>bold?</b>"},
                                                       HOSTILE_LABEL: {"name": "ars"}},
           "_meta": {"versions": {"evograd": "0.1.0", "numpy": "2.0"}, "git_revision": "abc123", "date": "d"}}
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for (label, seed), evals in RUNS.items():
        d = out / label / f"seed{seed}"
        d.mkdir(parents=True)
        with open(d / "progress.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(HEADER)
            w.writerows([[label, seed, g, s, 0, t, 1.0, 2.0, r, 1.0] for g, (s, t, r) in enumerate(evals)])
        failed = len(evals) < 3
        res = {"method": label, "seed": seed, "status": "failed" if failed else "ok",
               "error": HOSTILE_ERROR if failed else None, "final_eval_return": evals[-1][2],
               "best_eval_return": max(e[2] for e in evals), "env_steps": evals[-1][0], "wall_s": evals[-1][1],
               "extra": {"stop_reason": "callback" if (label, seed) == ("cmaes", 1) else "max_env_steps"}}
        (d / "result.json").write_text(json.dumps(res))
    report(out)  # summary.md, summary.csv and the two curves PNGs, as compare leaves them
    return out


def test_page_is_self_contained_and_holds_every_section(run_dir):
    page = html_report.write_html(run_dir).read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert html_report.CSP in page
    srcs = re.findall(r"<img [^>]*src=\"([^\"]*)\"", page)
    pngs = list(run_dir.glob("*.png"))  # the two curves, and the performance profile where the report drew one
    assert len(srcs) == len(pngs) >= 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert ("<h2>Statistics</h2>" in page) == ("\n## Statistics\n" in (run_dir / "summary.md").read_text())
    for text in ("Summary", "Runs", "Failed jobs", "Environment", "Config", "Budget check",
                 "stopped short of the budget", "abc123", "not recorded", "curves_env_steps.png"):
        assert text in page, text
    assert page.count('class="plot"') == len(pngs)


def test_everything_from_the_run_directory_is_escaped(run_dir):
    page = html_report.write_html(run_dir).read_text()
    for raw in (HOSTILE_LABEL, HOSTILE_ERROR, HOSTILE_NAME, "<b>bold?</b>"):
        assert raw not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; RuntimeError" in page
    assert "&lt;/title&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page
    rows = summarize(run_dir)
    rows[0] = {**rows[0], "method": "<script>alert(1)</script>"}  # a label no directory can carry ("/")
    other = html_report.render_html(run_dir, rows)
    assert "<script>" not in other and "&lt;script&gt;alert(1)&lt;/script&gt;" in other


def test_only_images_directly_in_the_run_directory_are_embedded(run_dir, tmp_path):
    (tmp_path / "secret.png").write_bytes(b"\x89PNG not yours")
    md = run_dir / "summary.md"
    md.write_text(md.read_text() + "\n![x](../secret.png)\n![y](/etc/passwd)\n![z](summary.csv)\n")
    names = [n for n, _ in html_report.embedded_images(run_dir)]
    assert sorted(names) == sorted(p.name for p in run_dir.glob("*.png")) and "curves_env_steps.png" in names


def test_run_meta_sessions_show_in_the_environment_table(run_dir):
    assert read_run_meta(run_dir) == []
    record_session(run_dir)
    record_session(run_dir, resume=True)
    sessions = read_run_meta(run_dir)
    assert [s["resume"] for s in sessions] == [False, True]
    m = machine()
    assert m["cores"] >= 1 and m["cpu"]
    page = html_report.write_html(run_dir).read_text()
    assert "start 1" in page and "resume 2" in page and html_report.esc(m["cpu"]) in page
    (run_dir / RUN_META).write_text("{torn")
    assert read_run_meta(run_dir) == []


STATS_MD = """
## Statistics

95% stratified-bootstrap intervals. IQM: interquartile mean,
the mean of the **middle 50%** of runs.

| method | runs | final return IQM [95% CI] |
|---|---:|---:|
| cmaes | 2 | 115 [110, 120] |
| a\\|b <i>x</i> | 1 | 101 (1 run) |

### Probability of improvement

![performance_profile](curves_wall_clock.png)
![elsewhere](../secret.png)

## Runs

| not | statistics |
"""


def test_the_statistics_section_of_summary_md_renders_as_html(run_dir):
    md = run_dir / "summary.md"
    md.write_text("# toy\n\n| method |\n|---|\n| cmaes |\n\n![curves_env_steps](curves_env_steps.png)\n")
    assert html_report.markdown_section(run_dir) == []
    assert "<h2>Statistics</h2>" not in html_report.write_html(run_dir).read_text()
    md.write_text(md.read_text() + STATS_MD)
    section = "\n".join(html_report.markdown_section(run_dir))
    assert "## Runs" not in section and "| not | statistics |" not in section
    page = html_report.write_html(run_dir).read_text()
    stats = page[page.index("<h2>Statistics</h2>"):page.index("<h2>Plots</h2>")]
    assert stats.count("<table>") == 1 and "<h3>Probability of improvement</h3>" in stats
    assert "a|b &lt;i&gt;x&lt;/i&gt;" in stats and "<b>middle 50%</b>" in stats
    assert "<td class=n>115 [110, 120]</td>" in stats and "<td>cmaes</td>" in stats
    assert stats.count('class="plot"') == 1 and page.count('class="plot"') == 2  # each image once


# ---------------------------------------------------------------------------------------------- the browser
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((p for p in map(shutil.which, BROWSERS) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium, chromium-browser or google-chrome on PATH: the HTML report's browser "
                             "test needs one (Debian/Ubuntu: apt-get install -y chromium)")

# Put first in <head>, before the page's Content-Security-Policy (which would block it): it collects every
# error event (scripts, images that fail to load), CSP violation, unhandled rejection and console.error, and
# after load writes them with each <img>/<svg>'s rendered and natural size into <pre id="probe">.
PROBE = """<script>(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    errors.push("error: " + (e.message || (e.target && (e.target.currentSrc || e.target.tagName)) || "?"));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push("rejection: " + e.reason); });
  document.addEventListener("securitypolicyviolation", function (e) {
    errors.push("csp: " + e.violatedDirective + " " + e.blockedURI);
  });
  var original = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
  function write() {
    var plots = Array.prototype.map.call(document.querySelectorAll("img, svg"), function (el) {
      var r = el.getBoundingClientRect();
      return {tag: el.tagName.toLowerCase(), width: r.width, height: r.height, complete: el.complete !== false,
              naturalWidth: el.naturalWidth || 0, naturalHeight: el.naturalHeight || 0};
    });
    var pre = document.getElementById("probe") || document.body.appendChild(document.createElement("pre"));
    pre.id = "probe";
    pre.textContent = JSON.stringify({errors: errors, plots: plots, scripts: document.scripts.length});
  }
  window.addEventListener("load", function () { write(); setTimeout(write, 300); });
})();</script>"""


def _load_in_chromium(page_path, tmp_path):
    """The page with PROBE injected, loaded by headless Chromium (--dump-dom); the probe's JSON and stderr."""
    text = page_path.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions", "--no-first-run",
           "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}",
           "--window-size=1280,2000", "--virtual-time-budget=2000", "--dump-dom", probed.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe output (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    import html

    return json.loads(html.unescape(found.group(1))), proc.stdout, proc.stderr


def _console_messages(stderr):
    """Chromium's own log of the page's console (--enable-logging): uncaught exceptions, console calls, CSP
    violations. The page has no script, so any message at all is a fault."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


@needs_chromium
def test_the_page_loads_in_headless_chromium_without_errors_and_every_plot_renders(run_dir, tmp_path):
    page = html_report.write_html(run_dir)
    probe, dom, stderr = _load_in_chromium(page, tmp_path)
    assert probe["errors"] == [] and _console_messages(stderr) == [], (probe["errors"], _console_messages(stderr))
    expected = len(list(run_dir.glob("*.png")))  # curves_env_steps, curves_wall_clock (+ performance_profile)
    assert expected >= 2 and len(probe["plots"]) == expected, probe["plots"]
    for p in probe["plots"]:
        assert p["width"] > 0 and p["height"] > 0, p
        if p["tag"] == "img":
            assert p["complete"] and p["naturalWidth"] > 0 and p["naturalHeight"] > 0, p
    assert probe["scripts"] == 1  # the probe alone: nothing from the run directory became a script
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom


@needs_chromium
def test_the_probe_sees_errors_and_broken_images(tmp_path):
    """The negative control: a page with a console.error, an uncaught exception and an image that does not
    decode gives errors and a zero natural size, so the test above cannot pass by seeing nothing."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
                   '<img src="data:image/png;base64,AAAA" alt="broken">'
                   '<script>console.error("boom"); null.x;</script></body></html>')
    probe, _, stderr = _load_in_chromium(bad, tmp_path)
    text = " ".join(probe["errors"])
    assert "console.error: boom" in text and "null" in text, probe["errors"]
    assert any('"boom"' in ln for ln in _console_messages(stderr)), stderr[-3000:]
    assert probe["plots"] and probe["plots"][0]["naturalWidth"] == 0
