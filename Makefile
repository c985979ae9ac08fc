# Coldstation: `make test` and `make demo` work from a fresh Debian machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# softhsm2: the embedded token; the TPM stack (tests/tpm_stack.py): a second real PKCS#11
# module (tpm2-pkcs11 over the swtpm emulator) for officer tokens; chromium and its driver:
# the audit report as auditors open and print it (tests/audit/test_report_browser.py)
APT_PACKAGES := softhsm2 libzbar0 faketime libtpm2-pkcs11-1 swtpm swtpm-tools tpm2-abrmd \
	tpm2-tools libtss2-tcti-tabrmd0 dbus chromium chromium-driver postgresql
# tests/interop: the UR, UR-registry and BBQr libraries other wallets embed, run by node.
# Debian's nodejs and npm, unless a node with its own npm (e.g. NodeSource's) is there.
INTEROP := tests/interop
export COLDSTATION_VECTORS ?= $(abspath ../shared/vectors)

.PHONY: test demo lint bench fuzz system-deps venv clean image image-deps test-image \
	image-ci-build image-ci-test

# The house rules first (each in seconds), then the suite: lint and format, layering contracts,
# types (strict on shared/'s pure core) and dead code, all configured in pyproject.toml.
test: venv $(INTEROP)/node_modules/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m mypy
	$(PY) -m vulture
	$(PY) -m pytest tests

# The whole story on embedded defaults (SoftHSM2, local regtest validated by Bitcoin Core's
# libbitcoinkernel, QR frames through a simulated camera), narrated, in DEMO_DIR.
# DEMO_DIR is wiped first (only if an earlier demo made it); DEMO_ARGS=--keep-node keeps the node.
DEMO_DIR ?= coldstation-demo
demo: venv
	$(PY) -m tests.e2e.demo --dir $(DEMO_DIR) $(DEMO_ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m mypy
	$(PY) -m vulture

bench: venv
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) -m tests.bench.psbt_bench
	$(PY) -m tests.bench.review_bench
	$(PY) -m tests.bench.fountain_bench
	$(PY) -m tests.bench.qr_bench
	$(PY) -m tests.bench.terminal_qr_bench
	$(PY) -m tests.bench.hsm_bench
	$(PY) -m tests.bench.sign_bench
	$(PY) -m tests.bench.coordinator_bench
	$(PY) -m tests.bench.audit_bench

fuzz: venv
	$(VENV)/bin/pip install -q -e '.[fuzz]'
	$(PY) tests/fuzz/fuzz_psbt.py -atheris_runs=$${RUNS:-200000}

# Debian packages the later layers need (PKCS#11 token, QR decoding); installed only when missing.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: system-deps $(VENV)/.installed

# Pinned by package-lock.json, from the npm registry.
$(INTEROP)/node_modules/.installed: $(INTEROP)/package-lock.json
	@command -v npm >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm; }
	npm ci --prefix $(INTEROP) --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .hypothesis $(INTEROP)/node_modules

# The cold-station OS image (issue 8, docs/image.md): needs root, debootstrap and, for the
# tests, qemu. `make test-image` builds twice (reproducibility) and boots three times.
# CI (.ci/run) builds once with `image-ci-build`, beside `make test`, then runs every image
# test but the second build with `image-ci-test` (about 2 + 4 minutes on 2 cores).
IMAGE_APT_PACKAGES := debootstrap squashfs-tools dosfstools mtools fdisk zstd e2fsprogs qemu-system-x86 ovmf

image-deps:
	@missing=""; for p in $(IMAGE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; fi

image: image-deps
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) bash image-build/build.sh

test-image: venv image-deps
	COLDSTATION_IMAGE_TESTS=1 $(PY) -m pytest tests/image -v -rA

IMAGE_CI_OUT ?= image-build/out-ci
image-ci-build: image-deps
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) env COLDSTATION_IMAGE_OUT=$(abspath $(IMAGE_CI_OUT)) \
	  bash image-build/build.sh

image-ci-test: venv image-deps
	COLDSTATION_IMAGE_TESTS=1 COLDSTATION_IMAGE_DIR=$(abspath $(IMAGE_CI_OUT)) $(PY) -m pytest \
	  tests/image -rA --deselect tests/image/test_image.py::test_two_builds_give_the_same_image
