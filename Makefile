# Two entry points for a fresh machine: `make app` and `make test` (see README.md).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
PORT   ?= 8501
TEACHER ?=
# test processes: much of the suite waits on servers, browsers and worker processes, so two
# processes finish it in about two thirds of the time on a 2-core machine. worksteal: an idle
# process takes queued tests from a busy one, so the long tests (browsers, Ray) spread out.
TEST_JOBS ?= 2

.PHONY: install app test bench clean

# One resolve of requirements.txt and the package with its dependencies: pip checks the pinned
# torch pair against pyproject.toml's floors, and `pip check` that everything installed agrees.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt -e .
	$(PY) -m pip check
	touch $(STAMP)

$(DEV): $(STAMP) requirements-dev.txt
	$(PY) -m pip install -r requirements-dev.txt -e '.[test,ray]'
	$(PY) -m pip check
	touch $(DEV)

install: $(STAMP)

# TEACHER=1 offers the teacher notes on the Guide page (students' servers leave it unset)
app: $(STAMP)
	LAMP_TEACHER=$(TEACHER) $(PY) -m streamlit run app/streamlit_app.py --server.port $(PORT) --browser.gatherUsageStats false

test: $(DEV)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist worksteal

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
