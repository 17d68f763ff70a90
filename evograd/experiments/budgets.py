"""Which budget each method of a comparison runs on.

A config's top-level `budget` holds for every method unless a method block gives its own (`budget:` inside
`methods.<label>`, keys merged over the top level's when the config is resolved): methods whose reference
budgets differ by orders of magnitude (ES at 5M env steps, SAC at 300k) then run side by side in one
comparison, and every table states each method's budget. Kept apart from config.py so job processes and
reports read it without loading the config machinery.
"""
from __future__ import annotations


def _own(config: dict, label: str) -> tuple[dict | None, dict | None]:
    """The method's resolved block and its own budget (None where it has none)."""
    block = (config.get("methods") or {}).get(label)
    if not isinstance(block, dict):
        return None, None
    own = block.get("budget")
    return block, own if isinstance(own, dict) else None


def method_budget(config: dict, label: str) -> dict:
    """The budget one method's runs get: its own `budget:` where the config gives one, else the top level's."""
    own = _own(config, label)[1]
    return own if own is not None else (config.get("budget") or {})


def job_config(config: dict, label: str) -> dict:
    """The config one method's job runs under: the method's own budget in the top-level `budget`, so every
    runner reads one place."""
    block, own = _own(config, label)
    if own is None:
        return config
    methods = {**config["methods"], label: {k: v for k, v in block.items() if k != "budget"}}
    return {**config, "budget": own, "methods": methods}


def budget_groups(config: dict) -> list[tuple[list[str], dict]]:
    """The methods grouped by the budget they run on, in config order ([([], budget)] without methods)."""
    groups: list[tuple[list[str], dict]] = []
    for label in config.get("methods") or {}:
        budget = method_budget(config, label)
        same = next((g for g in groups if g[1] == budget), None)
        if same is None:
            groups.append(([label], budget))
        else:
            same[0].append(label)
    return groups or [([], config.get("budget") or {})]


def _number(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,}"


def budget_text(config: dict, fmt=_number) -> str:
    """"2,000,000 env steps per run", or one such phrase per group of methods when budgets differ."""
    names = {"env_steps": "env steps", "evals": "evaluations", "seconds": "s wall-clock"}

    def one(budget: dict) -> str:
        parts = [f"{fmt(v)} {names.get(k, k)}" for k, v in budget.items() if v is not None]
        return " / ".join(parts) + " per run" if parts else "not recorded"

    groups = budget_groups(config)
    if len(groups) == 1:
        return one(groups[0][1])
    return "; ".join(f"{one(b)} ({', '.join(labels)})" for labels, b in groups)
