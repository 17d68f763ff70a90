"""Turn each case's JSON (the last stdout line of its script) into rows of the suite's table.

A row: case, what is measured, evograd's figure, the peer's figure, the ratio, the target and a verdict
(PASS / FAIL with "missed by X%" / INFO where the issue sets no target). Ratios are evograd / peer for
times and peer / evograd ("x faster") for speedups, as each row's target says.
"""
from __future__ import annotations

import math


def row(case, what, ours, peer, ratio=None, target=None, passed=None, note=""):
    verdict = "INFO" if passed is None else ("PASS" if passed else "FAIL")
    return {"case": case, "what": what, "evograd": ours, "peer": peer, "ratio": ratio, "target": target,
            "verdict": verdict, "note": note}


def missed_by(ratio, limit, at_most: bool) -> str:
    """How far a ratio is from its limit, in percent of the limit."""
    if ratio is None:
        return ""
    pct = 100.0 * ((ratio / limit - 1.0) if at_most else (1.0 - ratio / limit))
    return f"missed by {pct:.0f}%" if pct > 0 else ""


def notes(*parts) -> str:
    return "; ".join(p for p in parts if p)


def f(x, nd=0, unit=""):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{nd}f}{unit}"


def cmaes(d):
    out = []
    for name, r in d["results"].items():
        full = not r["separable"]
        lim = d.get("target_ratio", 1.2)
        out.append(row("cmaes", f"ms/generation, {name} (popsize default)", f(r["evograd_ms"], 3),
                       f"pycma {f(r['pycma_ms'], 3)}", f"{r['ratio']:.3f}x", f"<= {lim}x" if full else None,
                       r["ratio"] <= lim if full else None,
                       missed_by(r["ratio"], lim, True) if full else "separable: no target"))
    return out


def cbo(d):
    out = []
    for fname, by_n in d["results"].items():
        for n, r in by_n.items():
            c = r["cpu"]
            mb = r.get("cbx_batched_runs", 10)
            out.append(row("cbo", f"{fname}-20 {n}: successes", f"{r['evograd_successes']}/{d['seeds']}",
                           f"CBXpy {r['cbx_single_successes']}/{d['seeds']} single, {r['cbx_batched_successes']}/{mb} "
                           f"batched", None, "equal success", r["pass_success"]))
            sp = c["speedup_vs_single"]
            out.append(row("cbo", f"{fname}-20 {n}: CPU s/run vs CBXpy single runs", f(c["evograd_s_per_run"], 3),
                           f(c["cbx_single_s_per_run"], 3), f"{sp:.2f}x faster", ">= 5x", sp >= 5.0,
                           notes(missed_by(sp, 5.0, False), f"the fitness + noise floor allows at most "
                                 f"{r['max_speedup_vs_single']}x")))
            sb = c["speedup_vs_batched"]
            out.append(row("cbo", f"{fname}-20 {n}: CPU s/run vs CBXpy batched (M={mb})", f(c["evograd_s_per_run"], 3),
                           f(c["cbx_batched_s_per_run"], 3), f"{sb:.2f}x faster", ">= 3x", sb >= 3.0,
                           missed_by(sb, 3.0, False)))
    return out


def rollouts(d):
    c = d["cartpole_linear_pop256"]
    g = c["good"]
    out = [row("rollouts", "CartPole-v1 linear pop 256, env steps/s vs raw make_vec(256)", f(g["steps_per_s"]),
               f(c["raw_make_vec_256_steps_per_s"]), f"{g['ratio_vs_raw']:.3f}x", ">= 0.8x", g["ratio_vs_raw"] >= 0.8,
               missed_by(g["ratio_vs_raw"], 0.8, False))]
    for k, label in (("evotorch_gymne", "EvoTorch GymNE"), ("evotorch_vecgymne", "EvoTorch VecGymNE")):
        if k in c:
            out.append(row("rollouts", f"CartPole-v1 linear pop 256, env steps/s vs {label} ({c[k]['workers']})",
                           f(g["steps_per_s"]), f(c[k]["steps_per_s"]), f"{c[k]['evograd_speedup']:.1f}x faster",
                           None, None, "same rows, obs. normalization off on both"))
    h = d.get("halfcheetah_linear_pop64")
    if h:
        out.append(row("rollouts", "HalfCheetah-v5 linear pop 64, one worker vs raw single env",
                       f(h["worker_steps_per_s"]), f(h["raw_single_env_steps_per_s"]), f"{h['ratio_vs_raw']:.3f}x",
                       None, None, h.get("note", "")))
    return out


def workers(d):
    r = d["ratio_2workers_vs_2x_raw1"]
    out = [row("workers", f"{d['env']} linear pop {d['popsize']}, 2 workers vs 2 x raw single-env rate",
               f(d["workers2"]), f"2 x {f(d['raw1'])}", f"{r:.3f}x", f">= {d['target']}x", r >= d["target"],
               notes(missed_by(r, d["target"], False), f"machine limit: 2 raw processes = {d['raw2'] / d['raw1']:.2f}x"
                     f" one, ours = {d['ratio_2workers_vs_raw2']:.3f}x of that"))]
    e = d.get("evotorch_gymne_2actors")
    if e:
        out.append(row("workers", f"{d['env']} linear pop {d['popsize']}, 2 workers vs EvoTorch GymNE ({e['workers']})",
                       f(d["workers2"]), f(e["steps_per_s"]), f"{d['workers2'] / e['steps_per_s']:.2f}x faster",
                       None, None, "same rows"))
    return out


def ppo_cartpole(d):
    c = d["cartpole"]
    e, b = c["evograd"], c["sb3"]
    r = c.get("wall_ratio")
    out = [row("ppo", f"CartPole-v1 wall s to 475 (median, {e['solved']}/{e['runs']} vs {b['solved']}/{b['runs']} "
               "solved)", f(e["median_wall_to_475"], 2), f"SB3 {f(b['median_wall_to_475'], 2)}",
               None if r is None else f"{r:.3f}x", "<= 0.5x", c["pass_speed"] and c["pass_solved"],
               notes(missed_by(r, 0.5, True), f"CPU-time ratio {f(c.get('cpu_ratio'), 3)}"))]
    # equal steps: the mean over the shared evaluation points (~5k, 10k, 15k, 20k steps; a solved run keeps
    # its last value), i.e. the area under both learning curves over the same steps
    pairs = [(x, y) for x, y in zip(e["eval_at_k"], b["eval_at_k"]) if x is not None and y is not None]
    me, mb = (sum(p[i] for p in pairs) / len(pairs) if pairs else None for i in (0, 1))
    ratio = None if not pairs or mb == 0 else me / mb
    out.append(row("ppo", "CartPole-v1 eval return at ~5k/10k/15k/20k steps (medians over seeds), mean",
                   f"{f(me)} ({'/'.join(f(x) for x in e['eval_at_k'])})",
                   f"SB3 {f(mb)} ({'/'.join(f(y) for y in b['eval_at_k'])})",
                   None if ratio is None else f"{ratio:.3f}x", ">= 0.9x (within 10%)",
                   None if ratio is None else ratio >= 0.9, missed_by(ratio, 0.9, False)))
    return out


def ppo_pendulum(d):
    p = d["pendulum"]
    e, b = p["median_evograd"], p["median_sb3"]
    return [row("ppo", "Pendulum-v1 final return (median), same hyperparameters", f(e, 1), f"SB3 {f(b, 1)}", None,
                "within 10% of SB3", p["pass_return"], f"wall ratio evograd/SB3 {p['wall_ratio']:.3f}")]


def control(d):
    out = []
    acts = {s["method"]: s.get("workers") for s in d["summary"]}
    for t in d["targets"]:
        peer_label = {"evotorch_snes": "EvoTorch SNES", "sb3_ppo": "SB3 PPO"}[t["peer"]]
        thr = "200" if t["env"].startswith("Lunar") else "3430"
        peer = f"{peer_label} {f(t['peer_time'], 1)}" if t["peer_time"] is not None else \
            f"{peer_label} missed (> {d['budgets_s'][t['env']]:g} s)"
        ratio = None if t["ratio"] is None else ("<= " if t["ratio_is_bound"] else "") + f"{t['ratio']:.3f}x"
        if t["passed"] is None:  # the peer missed: the ratio is only bounded (or both missed)
            why = "both missed" if t["evograd_time"] is None else "peer missed its budget: the ratio is only bounded"
        elif t["evograd_time"] is None:
            why = "evograd missed"
        else:
            why = missed_by(t["ratio"], t["limit"], True)
        out.append(row("control", f"{t['env']} median training s to {thr}, evograd {t['evograd_method']}",
                       f(t["evograd_time"], 1), peer, ratio, f"<= {t['limit']:.3g}x", t["passed"],
                       notes(why, f"{peer_label}: {acts.get(t['peer'])}")))
        if t["passed"] is None:
            out[-1]["verdict"] = "UNDECIDED"
    check = d.get("budget_check")
    if check is not None:
        out.append(row("control", "runs that used their whole training-seconds budget", str(check["runs"] - len(
            check["short_runs"])), f"of {check['runs']}", None, "all", check["passed"], "; ".join(check["short_runs"])))
    return out


def parity(d):
    out = []
    for s in d["summary"]:
        if "ratio" not in s:
            out.append(row("parity", f"{s['env']} PPO final return, evograd / SB3", "-", "-", note="too few runs"))
            continue
        n = min(len(s["seeds"]["evograd"]), len(s["seeds"]["sb3"]))
        lo, hi = s["ratio_ci95"]
        steps = f(max(s["env_steps"]["sb3"]))
        out.append(row("parity", f"{s['env']} PPO final return, {steps} steps, {n} seeds, evograd / SB3",
                       f(s["mean"]["evograd"], 1), f"SB3 {f(s['mean']['sb3'], 1)}", f"{s['ratio']:.3f}x",
                       ">= 0.9x, 95% CI reaching 1", s["pass_return"], f"95% bootstrap {lo:.2f}-{hi:.2f}"))
        if s["pass_return"] is None:
            out[-1]["verdict"] = "UNDECIDED"
        sp = s["steps_per_s"]
        out.append(row("parity", f"{s['env']} PPO training steps/s (median), evograd / SB3", f(sp["evograd"]),
                       f"SB3 {f(sp['sb3'])}", f"{s['speed_ratio']:.2f}x", ">= 1.5x", s["pass_speed"],
                       missed_by(s["speed_ratio"], 1.5, False)))
    return out


def paper(d):
    out = []
    for env, r in d["results"].items():
        ratio = r["ratio_best_to_paper"]
        out.append(row("paper", f"{env} env steps to {r['threshold']:g}, best seed ({r['method']['name']}, "
                       f"{r['reached']} reached)", f(r["best_seed_steps"]), f"paper {f(r['paper_steps'])}",
                       None if ratio is None else f"{ratio:.2f}x", "<= 1x" if r["has_target"] else None,
                       r["passed"], notes(missed_by(ratio, 1.0, True) if r["has_target"] and ratio else
                                          ("missed within cap " + f(r["step_cap"]) if ratio is None else ""),
                                          f"median {f(r['median_steps'])}")))
    return out

def dask(d):
    b, t = d["best"], 0.9
    r1, r2 = d["dask_vs_joblib"], d["scaling_vs_raw"]
    return [row("dask", f"{d['env']} linear pop {d['popsize']}, Dask 2-worker cluster vs 2 joblib workers",
                f(b["dask-2"]), f(b["joblib-2"]), f"{r1:.3f}x", f">= {t}x", r1 >= t,
                notes(missed_by(r1, t, False), f"returns identical: {d['identical_returns']}")),
            row("dask", f"{d['env']} 1 -> 2 joblib workers gain vs 1 -> 2 raw processes gain",
                f"{b['joblib-2'] / b['serial']:.2f}x", f"{d['raw2'] / d['raw1']:.2f}x", f"{r2:.3f}", f">= {t}",
                r2 >= t, missed_by(r2, t, False))]


def mlp_backprop(d):
    t = d["target"]
    return [row("mlp_backprop", f"PPO loss+grad, {r['case']}: hand-written vs autograd", f"{r['manual_us']:.0f} us",
                f"{r['autograd_us']:.0f} us", f"{r['speedup']:.2f}x faster", f">= {t}x", r["keep"],
                missed_by(r["speedup"], t, False)) for r in d["rows"]]


def lowrank(d):
    """EGGROLL population evaluation vs plain batch inference; the target row: k = 16, the first thread count, CPU."""
    out, pop = [], d["popsize"]
    for r in d["rows"]:
        main = r["k"] == 16 and r["threads"] == d["target_threads"] and d["device"] == "cpu"
        where = f"pop {pop} x {r['k']} input(s), {r['threads']} thread(s)"
        for rank, goal in d["targets"].items():
            lr = r[f"lowrank_r{rank}"]
            out.append(row("lowrank", f"low-rank ES r={rank}, {where}: inputs/s vs plain inference", f(lr["ips"]),
                           f(r["plain_ips"]), f"{lr['ratio']:.3f}x", f">= {goal}x" if main else None,
                           lr["ratio"] >= goal if main else None,
                           notes(missed_by(lr["ratio"], goal, False) if main else "",
                                 f"with the update: {lr['ratio_with_update']:.3f}x")))
        out.append(row("lowrank", f"dense per-member perturbation, {where}: inputs/s vs plain inference",
                       f(r["dense"]["ips"]), f(r["plain_ips"]), f"{r['dense']['ratio']:.4f}x"))
    return out


def import_time(d):
    return [row("import", "import evograd after numpy, fresh interpreter (median)", f"{d['evograd_s'] * 1e3:.0f} ms",
                f"{d['numpy_s'] * 1e3:.0f} ms (numpy)", f"+{d['extra_s'] * 1e3:.0f} ms", "<= +100 ms",
                d["extra_s"] <= 0.1, note=f"torch loaded: {d['torch_loaded']}, gymnasium: {d['gymnasium_loaded']}")]


def zo_memory(d):
    t, peak, r, rb = d["target"], d["peak_mib"], d["ratio_mezo_forward"], d["ratio_backprop_forward"]
    size = f"{d['params'] / 1e6:.1f}M-param float32 MLP, batch {d['batch']}"
    return [row("zo_memory", f"peak RSS of a fresh process, MeZO step vs forward pass ({size})",
                f"{peak['mezo']:.0f} MiB", f"{peak['forward']:.0f} MiB (forward)", f"{r:.3f}", f"<= {t}", r <= t,
                notes(missed_by(r, t, True), f"{d['above_baseline_mib']['mezo']:.1f} vs "
                      f"{d['above_baseline_mib']['forward']:.1f} MiB over import+model")),
            row("zo_memory", f"peak RSS, backprop + Adam step vs forward pass ({size})", f"{peak['backprop']:.0f} MiB",
                f"{peak['forward']:.0f} MiB (forward)", f"{rb:.3f}",
                note=f"{d['above_baseline_mib']['backprop']:.1f} MiB over import+model")]


EXTRACTORS = {"dask": dask, "mlp_backprop": mlp_backprop, "import": import_time, "cmaes": cmaes, "cbo": cbo,
              "rollouts": rollouts, "workers": workers,
              "lowrank": lowrank,
              "ppo_cartpole": ppo_cartpole,
              "ppo_pendulum": ppo_pendulum, "control": control, "paper": paper, "parity": parity,
              "zo_memory": zo_memory}


def rows_for(case: str, data: dict) -> list[dict]:
    fn = EXTRACTORS.get(case)
    if fn is None:
        return [row(case, "see results.json", "-", "-", note="no target")]
    return fn(data)


def control_table(d) -> list[str]:
    """The per-method table of the fixed-budget case (medians over seeds; per-seed values in brackets)."""
    lines = ["| env | method | workers | seeds | best @60 s | best @120 s | best @end | final | reached | "
             "s to thr | env steps to thr | train steps/s | eval share | wall s to thr (with evals) | "
             "training s per seed | env steps per seed | whole budget |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in d["summary"]:
        per = ", ".join(f(x, 1) for x in s["time_to_threshold_per_seed"])
        share = None if s["eval_share"] is None else 100 * s["eval_share"]
        lines.append(f"| {s['env']} | {s['method']} | {s['workers']} | {len(s['seeds'])} | {f(s['best_at_60'])} | "
                     f"{f(s['best_at_120'])} | {f(s['best_at_end'])} | {f(s['final'])} | {s['reached']} | "
                     f"{f(s['time_to_threshold'], 1)} ({per}) | {f(s['steps_to_threshold'])} | "
                     f"{f(s['train_steps_per_s'])} | {f(share, 1)}% | {f(s['wall_to_threshold'], 1)} | "
                     f"{', '.join(f(x, 1) for x in s.get('train_s_per_seed', []))} | "
                     f"{', '.join(f(x) for x in s.get('env_steps_per_seed', []))} | {s.get('budget_used', '-')} |")
    return lines
