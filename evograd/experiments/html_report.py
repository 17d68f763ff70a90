"""report.html: one self-contained page for a run directory, to attach to a paper or a pull request.

It renders the same data as summary.md: the rows of `report.summarize` (the summary table, the Runs table, the
budget check, failed jobs); summary.md's Statistics section as written there (report_stats: IQM and mean with
bootstrap intervals, probability of improvement, the performance profile; absent in older run directories);
the plots summary.md links (embedded as data: URIs, so the page has no file beside it), the config
(config.resolved.yaml without its `_meta`) and what
the run ran on: versions, git revision, date and command line from config.resolved.yaml's `_meta` and from
run_meta.json (one entry per compare start or resume, with the machine); "not recorded" where a run directory
predates them.

Nothing is fetched: no external stylesheet, script, font or image, and a Content-Security-Policy that allows
only inline styles and data: images. Every string read from the run directory (method labels, error
messages, config values) is HTML-escaped, and the page has no script of its own, so a hostile run directory
cannot run code in the reader's browser.
"""
from __future__ import annotations

import base64
import datetime
import html
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .budgets import budget_text
from .records import read_config, task_title
from .report import cpu_cell, fmt_seconds, summarize
from .runmeta import read_run_meta

__all__ = ["CSP", "HTML_NAME", "STATS_HEADING", "embedded_images", "markdown_section", "render_html", "write_html"]

HTML_NAME = "report.html"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
NOT_RECORDED = "not recorded"
STATS_HEADING = "## Statistics"
_MIME = {".png": "image/png", ".svg": "image/svg+xml"}
_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#1d1d1f}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f2f2f5;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa} .bad{color:#b00020;font-weight:600} .ok{color:#1b6e1b}
.muted{color:#666} pre{background:#f6f8fa;padding:1em;overflow:auto;border:1px solid #e1e4e8;font-size:.88em}
figure{margin:1em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em} code{background:#f2f2f5;padding:0 .2em}
"""


class Markup(str):
    """Text that is already HTML (built here from escaped parts); everything else is escaped."""


def esc(x: Any) -> str:
    return x if isinstance(x, Markup) else html.escape("" if x is None else str(x), quote=True)


def _fmt(x: Any, digits: int = 4) -> str:
    """Numbers as summary.md writes them: thousands separators when large, significant digits when small."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "—"
    if not isinstance(x, (int, float)):
        return str(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.2e}"
    return f"{x:,.{digits}g}"


def _table(headers: list[str], body: list[list[Any]], numeric: set[int] = frozenset()) -> Markup:
    """An HTML table; cells are escaped unless they are Markup; columns in `numeric` align right."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    lines = ["<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{esc(c)}</td>' for i, c in enumerate(r))
             + "</tr>" for r in body]
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>")


# ------------------------------------------------------------------------------------------- the tables
def _summary_spec(function: bool, gap: bool) -> list[tuple[str, Callable[[dict], str]]]:
    def col(key, fmt=_fmt):
        return lambda r: fmt(r.get(key))

    def reach(key, fmt=_fmt, unit=""):  # the median, and over how many seeds it was taken
        return lambda r: "—" if r.get(key) is None else f"{fmt(r[key])}{unit} ({r['_reached']}/{r['seeds']})"

    spec = [("method", lambda r: r["method"]), ("seeds", col("seeds")), ("successes", col("successes"))]
    if function:
        spec += [("best value (median)", col("best_value_median")), ("best value (mean)", col("best_value_mean")),
                 ("evals to threshold (median)", reach("evals_to_threshold_median")),
                 ("seconds to threshold (median)", reach("seconds_to_threshold_median", fmt_seconds, " s")),
                 ("evals (mean)", col("evals_mean"))]
    else:
        spec += [("final return (mean ± std)", lambda r: "—" if r.get("final_return_mean") is None else
                  f"{_fmt(r['final_return_mean'])} ± {_fmt(r['final_return_std'], 2)}"),
                 ("best eval (mean)", col("best_eval_return_mean")),
                 ("env steps to threshold (median)", reach("steps_to_threshold_median")),
                 ("seconds to threshold (median)", reach("seconds_to_threshold_median", fmt_seconds, " s")),
                 ("env steps (mean)", col("env_steps_mean"))]
    spec += [("wall s (mean)", col("wall_s_mean", fmt_seconds)), ("CPU h (all runs)", cpu_cell),
             ("failed jobs", col("failed_jobs")),
             ("runs short of budget", col("runs_short_of_budget"))]
    return spec + ([("gap to optimal (mean)", col("gap_to_optimal_mean"))] if gap else [])


def _summary_table(rows: list[dict], function: bool) -> Markup:
    gap = any(r.get("gap_to_optimal_mean") is not None for r in rows)
    spec = _summary_spec(function, gap)
    return _table([h for h, _ in spec], [[f(r) for _, f in spec] for r in rows], set(range(1, len(spec))))


def _runs_table(rows: list[dict], function: bool) -> Markup:
    heads = ["method", "seed", "status", "best value" if function else "final return",
             "evaluations" if function else "env steps"] + ([] if function else ["eval env steps"])
    body = []
    for x in (x for r in rows for x in r.get("_runs", [])):
        why = Markup(esc(x["stop_reason"]) + ' <span class="bad">(short of its budget)</span>') if x["short"] \
            else x["stop_reason"]
        status = x["status"] if x["status"] == "ok" else Markup(f'<span class="bad">{esc(x["status"])}</span>')
        ev = [] if function else [_fmt(x.get("eval_env_steps"))]
        body.append([x["method"], x["seed"], status, _fmt(x["value"]), _fmt(x["spent"]), *ev, fmt_seconds(x["wall_s"]),
                     fmt_seconds(x.get("cpu_s")), why])
    heads += ["wall s", "CPU s", "stopped by"]
    return _table(heads, body, {i for i, h in enumerate(heads) if h not in ("method", "status", "stopped by")})


def _setup_list(rows: list[dict], cfg: dict, function: bool, threshold: float | None) -> Markup:
    threshold = cfg.get("threshold") if threshold is None else threshold
    thr = "none" if threshold is None else f"{'best value ≤' if function else 'eval return ≥'} {threshold:g}"
    short = [x for r in rows for x in r.get("_short", [])]
    check = (Markup('<span class="ok">every completed run used its whole budget (or was done)</span>') if not short
             else Markup(f'<span class="bad">FAILED: {len(short)} run(s) stopped short of the budget:</span> '
                         + esc("; ".join(short))))
    items = [("Threshold", thr), ("Budget", budget_text(cfg, _fmt)),
             ("Budget check", check), ("Seeds per method", max((r["seeds"] for r in rows), default=0))]
    return Markup("<ul>" + "".join(f"<li><b>{esc(k)}:</b> {esc(v)}</li>" for k, v in items) + "</ul>")


# ------------------------------------------------------------------------------------------- statistics
def markdown_section(out_dir: str | Path, heading: str = STATS_HEADING) -> list[str]:
    """The lines of summary.md's section under `heading` (up to the next "## " heading); [] without one.

    The Statistics section (report_stats.py: IQM and mean with bootstrap intervals, probability of improvement,
    the performance profile) is taken from summary.md as written, so the page shows the very numbers the
    markdown does; a summary.md without it (older runs) gives no section."""
    md = Path(out_dir) / "summary.md"
    lines = md.read_text(encoding="utf-8", errors="replace").splitlines() if md.exists() else []
    if heading not in lines:
        return []
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def _inline(text: str) -> Markup:
    """Escaped text with summary.md's inline marks: **bold** and `code`."""
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc(text))
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", out))


def _md_cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _md_table(lines: list[str]) -> Markup:
    head, align = _md_cells(lines[0]), _md_cells(lines[1]) if len(lines) > 1 else []
    numeric = {i for i, a in enumerate(align) if a.endswith(":")}
    body = [[_inline(c) for c in _md_cells(ln)] for ln in lines[2:]]
    return _table(head, body, numeric)


def _markdown_blocks(lines: list[str], images: dict[str, str]) -> Markup:
    """summary.md's subset as HTML: ### headings, pipe tables, images (as their embedded data URIs), list items
    and paragraphs; all text escaped."""
    parts, i = [], 0
    while i < len(lines):
        line = lines[i].strip()
        j = i + 1
        if line.startswith("|"):
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            parts.append(_md_table(lines[i:j]))
        elif (img := _IMAGE_LINK.fullmatch(line)) is not None:
            parts += [_figure(img.group(1), images[img.group(1)])] if img.group(1) in images else []
        elif line.startswith("#"):
            parts.append(f"<h3>{_inline(line.lstrip('#').strip())}</h3>")
        elif line.startswith("- "):
            parts.append(f"<ul><li>{_inline(line[2:])}</li></ul>")
        elif line:
            while j < len(lines) and lines[j].strip() and not lines[j].lstrip().startswith(("|", "#", "- ", "![")):
                j += 1
            parts.append(f"<p>{_inline(' '.join(ln.strip() for ln in lines[i:j]))}</p>")
        i = j
    return Markup("".join(parts))


def _statistics_section(lines: list[str], images: dict[str, str]) -> Markup:
    return Markup("<h2>Statistics</h2>" + _markdown_blocks(lines, images)) if lines else Markup("")


# ------------------------------------------------------------------------------------------- plots
def embedded_images(out_dir: str | Path) -> list[tuple[str, str]]:
    """(name, data: URI) for every PNG/SVG that summary.md links (every curves_*.png when there is no
    summary.md), in order. Only files directly in the run directory are read: a link elsewhere is skipped."""
    out_dir = Path(out_dir).resolve()
    md = out_dir / "summary.md"
    names = _IMAGE_LINK.findall(md.read_text(encoding="utf-8", errors="replace")) if md.exists() else \
        sorted(p.name for p in out_dir.glob("curves_*.png"))
    images = []
    for name in dict.fromkeys(names):
        path = (out_dir / name).resolve()
        if path.parent != out_dir or path.suffix.lower() not in _MIME or not path.is_file():
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        images.append((path.name, f"data:{_MIME[path.suffix.lower()]};base64,{data}"))
    return images


def _figure(name: str, uri: str) -> Markup:
    return Markup(f'<figure class="plot"><img src="{esc(uri)}" alt="{esc(name)}">'
                  f"<figcaption>{esc(name)}</figcaption></figure>")


def _plots_section(images: list[tuple[str, str]]) -> Markup:
    if not images:
        return Markup('<h2>Plots</h2><p class="muted">No plots in this run directory.</p>')
    return Markup("<h2>Plots</h2>" + "".join(_figure(name, uri) for name, uri in images))


# ------------------------------------------------------------------------------------------- provenance
def _environment_table(cfg: dict, sessions: list[dict]) -> Markup:
    meta = cfg.get("_meta") if isinstance(cfg.get("_meta"), dict) else {}
    cols = sessions or [meta]
    heads = ["", *(("resume" if s.get("resume") else "start") + f" {i + 1}" for i, s in enumerate(cols))] \
        if sessions else ["", "start (config.resolved.yaml)"]

    def get(s, *keys):
        for k in keys:
            s = s.get(k) if isinstance(s, dict) else None
        return NOT_RECORDED if s is None else s

    pkgs = dict.fromkeys(k for s in cols for k in (get(s, "versions") if isinstance(get(s, "versions"), dict)
                                                   else {}))
    spec = [("date", ("date",)), ("git revision", ("git_revision",))]
    spec += [(p, ("versions", p)) for p in pkgs or ("evograd", "numpy", "torch", "gymnasium")]
    spec += [("CPU", ("machine", "cpu")), ("cores", ("machine", "cores")),
             ("usable cores", ("machine", "usable_cores")), ("memory GiB", ("machine", "memory_gib")),
             ("OS", ("machine", "os")), ("command", ("argv",))]
    body = []
    for name, keys in spec:
        vals = [get(s, *keys) for s in cols]
        body.append([name, *(" ".join(map(str, v)) if isinstance(v, list) else v for v in vals)])
    return _table(heads, body)


def _config_section(cfg: dict) -> Markup:
    import yaml

    plain = {k: v for k, v in cfg.items() if k != "_meta"}
    if not plain:
        return Markup(f'<h2>Config</h2><p class="muted">config.resolved.yaml: {NOT_RECORDED} (or unreadable)</p>')
    text = yaml.safe_dump(plain, sort_keys=False, default_flow_style=None, width=110, allow_unicode=True)
    return Markup(f"<h2>Config</h2><p>config.resolved.yaml (without <code>_meta</code>):</p><pre>{esc(text)}</pre>")


# ------------------------------------------------------------------------------------------- the page
def render_html(out_dir: str | Path, rows: list[dict[str, Any]], *,
                threshold: float | None = None, title: str | None = None) -> str:
    """The page as a string, from summarize()'s rows and the run directory's files; threshold None: the
    config's (as in summary.md)."""
    out_dir = Path(out_dir)
    cfg = read_config(out_dir)
    function = any("best_value_median" in r for r in rows)
    title = title or task_title(cfg, out_dir)
    errors = [e for r in rows for e in r.get("_errors", [])]
    stats = markdown_section(out_dir)
    images = embedded_images(out_dir)
    in_stats = set(_IMAGE_LINK.findall("\n".join(stats)))  # the profile shows in its section, not twice
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    from .. import __version__

    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="muted">Run directory <code>{esc(out_dir.resolve().name)}</code>; page written {esc(now)} '
            f"by evograd {esc(__version__)} from the files the run wrote.</p>",
            _setup_list(rows, cfg, function, threshold), "<h2>Summary</h2>", _summary_table(rows, function),
            '<p class="muted">Successes: seeds whose best evaluation reached the threshold. '
            + ("Best value: best function value of each completed run. " if function else
               "Final return: the last evaluation of each completed run, mean ± std over those runs. ")
            + "To-threshold columns: median over the seeds that reached the threshold, (reached/seeds); a seed "
            "that never reached it counts as missing, not as a number; — when none did.</p>",
            _statistics_section(stats, dict(images)), _plots_section([x for x in images if x[0] not in in_stats]),
            "<h2>Runs</h2>", _runs_table(rows, function), "<h2>Failed jobs</h2>",
            "<ul>" + "".join(f"<li>{esc(e)}</li>" for e in errors) + "</ul>" if errors else "<p>None.</p>",
            "<h2>Environment</h2>", _environment_table(cfg, read_run_meta(out_dir)), _config_section(cfg)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_html(out_dir: str | Path, rows: list[dict[str, Any]] | None = None, *, path: str | Path | None = None,
               threshold: float | None = None, task_kind: str | None = None) -> Path:
    """Write the page (default RUN_DIR/report.html); rows from summarize() when not given. Reads the plots
    summary.md links, so run report.report() first for fresh ones."""
    out_dir = Path(out_dir)
    rows = summarize(out_dir, threshold, task_kind) if rows is None else rows
    path = Path(path) if path is not None else out_dir / HTML_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(out_dir, rows, threshold=threshold), encoding="utf-8")
    tmp.replace(path)
    return path
