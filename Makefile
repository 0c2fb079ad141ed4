# Targets a newcomer can guess: build, test, lint, bench; sam build calls build-<LogicalId>.
GO            ?= go
LAMBDA_ARCH   ?= arm64
ARTIFACTS_DIR ?= $(CURDIR)/.aws-sam/manual
LAMBDA_FLAGS  := -tags lambda.norpc -trimpath -ldflags "-s -w"

# LogicalId:functions/<dir>, the same pairs as template.yaml and shared/httpapi.Routes.
FUNCTIONS := \
	ListArtifactsFunction:list-artifacts \
	GetArtifactFunction:get-artifact \
	CreatePublishIntentFunction:create-publish-intent \
	GetPublishIntentFunction:get-publish-intent \
	RegisterArtifactFunction:register-artifact \
	PromoteArtifactFunction:promote-artifact \
	DeprecateArtifactFunction:deprecate-artifact \
	RetireArtifactFunction:retire-artifact \
	RevokeArtifactFunction:revoke-artifact \
	VerifyArtifactFunction:verify-artifact \
	GetArtifactPolicyFunction:get-artifact-policy \
	PutArtifactPolicyFunction:put-artifact-policy \
	ListArtifactAuditEventsFunction:list-artifact-audit-events \
	ListAuditEventsFunction:list-audit-events \
	PublisherFunction:publisher \
	VerifierFunction:verifier \
	RegistrarFunction:registrar

fn_dir = $(word 2,$(subst :, ,$(filter $(1):%,$(FUNCTIONS))))

RIE_VERSION   := v0.0.0-20261030222936-bef5c4ba774d
RIE           := bin/aws-lambda-rie

.PHONY: build test lint bench tidy-check run invoke FORCE
FORCE:

# sam build (BuildMethod: makefile) runs `make build-<LogicalId> ARTIFACTS_DIR=...`.
build-%: FORCE
	@test -n "$(call fn_dir,$*)" || { echo "unknown function $*"; exit 2; }
	CGO_ENABLED=0 GOOS=linux GOARCH=$(LAMBDA_ARCH) $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/$(call fn_dir,$*)

# Every function's bootstrap for Lambda (arm64) under bin/<LogicalId>/.
build:
	@for f in $(FUNCTIONS); do id=$${f%%:*}; $(MAKE) --no-print-directory build-$$id ARTIFACTS_DIR=$(CURDIR)/bin/$$id || exit 1; done

# The local cloud on 127.0.0.1 (API :3000, DynamoDB :8000) until Ctrl-C.
run:
	@mkdir -p bin && $(GO) build -o bin/local ./infra/local
	exec bin/local run

# make invoke FN=<LogicalId> EVENT=events/<file>.json: the function's real
# bootstrap under the Lambda Runtime Interface Emulator (like sam local invoke).
invoke: $(RIE)
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<LogicalId> EVENT=events/<file>.json"; exit 2; }
	$(GO) run ./infra/local invoke --fn $(FN) --event $(EVENT)

# The emulator, pinned, in a project-local bin/ (git-ignored).
$(RIE):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$(RIE_VERSION)

test: $(RIE)
	$(GO) test -race -count=1 ./...

lint: tidy-check
	@out=$$(gofmt -l shared functions infra); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

tidy-check:
	@cp go.mod /tmp/gpuaas-go.mod.bak; cp go.sum /tmp/gpuaas-go.sum.bak; \
	$(GO) mod tidy; \
	if ! cmp -s go.mod /tmp/gpuaas-go.mod.bak || ! cmp -s go.sum /tmp/gpuaas-go.sum.bak; then \
	  echo "go mod tidy changes go.mod/go.sum: run go mod tidy and commit the result"; \
	  cp /tmp/gpuaas-go.mod.bak go.mod; cp /tmp/gpuaas-go.sum.bak go.sum; exit 1; fi

BENCH_CMD := $(GO) test -run '^$$' -bench . -benchmem -count=1 -benchtime=300x ./shared/...
COLD_CMD  := $(GO) test -run '^$$' -bench ColdStart -count=1 -benchtime=60x ./infra/local/rie/
TRIPS_CMD := $(GO) test -count=1 -v -run '^TestDynamoDBRoundTrips$$' ./shared/httpapi/

# Figures for BENCHMARKS.md, each with the command that produced it.
bench: $(RIE)
	@mkdir -p .local
	$(BENCH_CMD) | tee .local/bench.txt
	$(COLD_CMD) | tee .local/bench-cold.txt
	$(TRIPS_CMD) | tee .local/bench-trips.txt
	@{ echo "# Benchmarks"; echo; \
	  echo "Produced by \`make bench\` on $$(date -u +%Y-%m-%d) ($$(nproc) cores, $$($(GO) env GOVERSION))."; echo; \
	  echo "Handlers run against minidyn (in-process DynamoDB on loopback) through the real SDK,"; \
	  echo "so ns/op measures this code plus the local engine, not AWS latency. ddb-calls/op is the"; \
	  echo "number of DynamoDB round trips per request counted by the SDK middleware (SPEC section 10);"; \
	  echo "a figure above a whole number is the SDK's own retry of a call that failed on loopback, which"; \
	  echo "is a round trip too and is counted (seen about once in 300 to 600 list requests)."; echo; \
	  echo "Command: \`$(subst $$$$,$$$$,$(BENCH_CMD))\`"; echo; echo '```'; grep -E '^(Benchmark|goos|goarch|cpu|pkg)' .local/bench.txt; echo '```'; echo; \
	  echo "## Cold start under the Lambda Runtime Interface Emulator"; echo; \
	  echo "A real function (get-artifact) against a hello-world aws-lambda-go binary built the same way"; \
	  echo "(SPEC section 10: init within 1.5x). init-ms is the emulator's INIT REPORT; cold-ms"; \
	  echo "runs from starting the emulator to the first invoke's answer."; echo; \
	  echo "Command: \`$(subst $$$$,$$$$,$(COLD_CMD))\`"; echo; echo '```'; grep -E '^(Benchmark|pkg)' .local/bench-cold.txt; echo '```'; echo; \
	  echo "## DynamoDB round trips of every route"; echo; \
	  echo "Each route once without contention, and its same-key replay, as TestDynamoDBRoundTrips asserts them"; \
	  echo "(SPEC section 10: register 1, a transition at most 2, a replay 1, get 1, a list page 1; the audit"; \
	  echo "pages' 2 and the publish intent's read before the registry are recorded in doc/adr/)."; echo; \
	  echo "Command: \`$(subst $$$$,$$$$,$(TRIPS_CMD))\`"; echo; echo '```'; grep -o 'dynamodb_calls .*' .local/bench-trips.txt; echo '```'; } > BENCHMARKS.md
	@echo wrote BENCHMARKS.md

# Each fuzz target for FUZZTIME (bounded); crashers land in testdata/fuzz.
FUZZTIME ?= 30s
FUZZ_TARGETS := \
	./shared/artifact:FuzzCheckDigest ./shared/artifact:FuzzValidRepositoryName \
	./shared/artifact:FuzzValidVersion ./shared/artifact:FuzzValidSlug \
	./shared/cursor:FuzzOpen ./shared/cursor:FuzzTamper \
	./shared/httpapi:FuzzRequest ./shared/httpapi:FuzzParseIdentity

.PHONY: fuzz soak
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "== $$fn ($$pkg, $(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; done
# Larger reliability runs than make test (bounded in time).
# The figures (t.Logf lines) are kept in .local/soak.txt and printed.
soak:
	@mkdir -p .local
	@SOAK=1 $(GO) test -race -count=1 -v -timeout 20m -run 'Soak|LostResponse|Fault' ./shared/httpapi/ > .local/soak.txt 2>&1; rc=$$?; \
	  grep -v -e '^=== ' -e '^    --- PASS' .local/soak.txt; exit $$rc
