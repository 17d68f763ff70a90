# Benchmarks against the peer libraries (benchmarks/suite.py). PY is the project's interpreter; the README
# set-up installs torch's CPU wheel first, so installing the `bench` extra below leaves torch as it is
# (its requirement is already met) and only adds the pinned peers: EvoTorch, Ray, Stable-Baselines3, CBXpy.
#   make bench                   every case, full length (about 5 h on 2 cores: control 75 min, PPO parity 2.5 h; use an
#                                otherwise idle machine; parity resumes from bench_results/parity/runs.jsonl)
#   make bench CONTROL_BUDGETS="60 90"   the same with shorter LunarLander/HalfCheetah budgets (control about 35 min)
#   make bench-quick             every case in its quick mode (a smoke test, under 5 min)
#   make bench-case CASE=control [QUICK=1]   one case (or several: CASE=cmaes,cbo)
#   make bench-list              the cases and the commands they run
#   .venv/bin/python benchmarks/suite.py --cases control,parity --resume bench_results/<stamp>
#                                finish an interrupted run of the long cases (they log every finished run)
# Results: bench_results/<UTC timestamp>/ (results.md, results.json, plots, one log per case).
PY ?= .venv/bin/python
CASE ?=
QUICK ?=

.PHONY: bench bench-quick bench-case bench-list bench-deps

bench-deps:
	$(PY) -m pip install -q -e ".[bench,dask]"

bench: bench-deps
	$(PY) benchmarks/suite.py $(if $(CONTROL_BUDGETS),--control-budgets $(CONTROL_BUDGETS))

bench-quick: bench-deps
	$(PY) benchmarks/suite.py --quick

bench-case:
	@test -n "$(CASE)" || { echo "usage: make bench-case CASE=name [QUICK=1]"; $(PY) benchmarks/suite.py --list; exit 2; }
	$(PY) -m pip install -q -e ".[bench,dask]"
	$(PY) benchmarks/suite.py --cases $(CASE) $(if $(QUICK),--quick)

bench-list:
	@$(PY) benchmarks/suite.py --list
