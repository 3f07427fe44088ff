# crypto-lambda: `make demo` runs the main job on the embedded sample, `make test` runs the tests.
# Both create .venv on first use from requirements.lock (about 3 minutes: pyspark is built from its sdist once,
# then cached). `make lock` regenerates the lock from pyproject.toml (README "Dependencies and upgrades").
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
POMS := jvm/pom.xml jvm/kafka-broker/pom.xml jvm/spark/pom.xml
JVM_STAMP := jvm/lib/.fetched-stamp

.PHONY: venv jvm setup demo test test-fast lint lock bench up clean

# Exactly the lock (hashes checked, nothing resolved), then the project itself with --no-deps.
$(STAMP): requirements.lock pyproject.toml tools/deps.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python tools/deps.py install
	touch $(STAMP)

venv: $(STAMP)

# The JVM artifacts of jvm/pom.xml (Kafka broker, Spark's Kafka connector) at their exact versions, fetched by
# Maven with checksums enforced (-C fails on a mismatch) into jvm/lib/ (ignored); again only when a pom changes.
$(JVM_STAMP): $(POMS)
	@command -v mvn >/dev/null || { echo "mvn not found: install Maven (Debian: apt-get install maven)"; exit 1; }
	rm -rf jvm/lib
	mvn -B -q -C -f jvm/pom.xml package
	touch $(JVM_STAMP)

jvm: $(JVM_STAMP)

setup: venv jvm

demo: setup
	$(BIN)/crypto-lambda demo

# All three tiers: the unit tier as test-fast runs it (two pytest-xdist workers), then the
# integration and end-to-end tiers in one serial session (one SparkSession, one broker; on 2 cores their real
# processes, e.g. the whole stack's clean stop, miss their timeouts when two tests compete for the CPU).
test: setup lint test-fast
	$(BIN)/pytest -q tests/e2e tests/integration

# The unit tier alone (tests/unit: no JVM, broker or browser), under a minute.
test-fast: venv
	$(BIN)/pytest -q -n 2 tests/unit

lint: venv
	$(BIN)/python tools/deps.py check
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# Needs only uv from the venv: after an edit of pyproject.toml the venv is stale (tools/deps.py install refuses a
# lock that lacks a declared package) until the lock is made again.
lock:
	test -x $(BIN)/uv || $(MAKE) venv
	$(BIN)/python tools/deps.py compile

bench: setup
	$(BIN)/python bench/run_all.py

# The whole stack under one supervisor until Ctrl-C: replay exchange, broker, producer, Spark streaming consumer,
# Dagster webserver (127.0.0.1:3000) + daemon, live web page. Options: $(BIN)/crypto-lambda up --help.
up: setup
	$(BIN)/crypto-lambda up

clean:
	rm -rf .lambda_home .pytest_cache .ruff_cache jvm/lib
