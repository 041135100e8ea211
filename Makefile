# spatialnav: `make demo` runs the main job, `make test` passes the tests.
# scripts/setup.sh creates .venv and installs the project (idempotent; instant when done).
PY := .venv/bin/python
SETUP := scripts/setup.sh

.PHONY: setup demo test docs bench picture acceptance clean-runs

setup:
	@bash $(SETUP)

demo: setup
	.venv/bin/spatialnav demo

# Two xdist workers: the suite is CPU-bound and this machine class has 2 cores.
# The tests also cover the optional MiniWorld adapter: set-up adds the [miniworld] extra first.
test: setup
	@bash $(SETUP) miniworld
	$(PY) -m pytest -q -n 2

# The docs site (mkdocs.yml) into site/; --strict: a broken link, anchor or docstring fails it.
docs: setup
	@bash $(SETUP) docs
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q

bench: setup
	.venv/bin/spatialnav bench sim
	.venv/bin/spatialnav bench wm

picture: setup
	.venv/bin/spatialnav picture

acceptance: setup
	.venv/bin/spatialnav eval experiment=acceptance
	.venv/bin/spatialnav eval agent=random split=val n_episodes=50 out_dir=runs/acceptance/random_val

clean-runs:
	rm -rf runs/demo runs/eval
