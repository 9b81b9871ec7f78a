# fuzz/fuzz.mk: libFuzzer harnesses (included by the Makefile; see fuzz/README.md).
#   make fuzz          each harness FUZZ_SECONDS (default 60) seconds
#   make fuzz-smoke    each harness FUZZ_SMOKE_SECONDS (default 3) seconds: CI
#                      (FUZZ_JOBS at once, default the CPU count: ~40 s on 2 CPUs with -j2)
#   make fuzz-build    build them only
#   make fuzz-repro FUZZ_NAME=csv INPUT=file    run one harness on one input
#   make fuzz-findings                          replay fuzz/findings/*/ inputs
# Every run prints one TAP line per harness and fails on any finding.

FUZZ_CC ?= clang
FUZZ_BUILD ?= build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 3
# the C harnesses; the Lua ones are fuzz/lua/<name>.lua driven by lua_runner.c
FUZZ_C = retry_after url buf judge reply store_file
FUZZ_LUA = csv jsonl template expand record mock_http webhook journal reentrancy
# these Lua modules call the C core: it is built into their harness
FUZZ_LUA_CORE = webhook journal reentrancy record csv jsonl template expand mock_http
FUZZ_NAMES ?= $(FUZZ_C) $(FUZZ_LUA)
FUZZ_SAN = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_FLAGS = -g -O1 -fno-omit-frame-pointer $(FUZZ_SAN) $(WARN) -Isrc -I$(LUA_INC) $(CURL_INC:%=-I%)
# the C library (src/lib/, no Lua): the harnesses reach it through its headers.
# Its files and the bindings' are compiled once, instrumented, and linked into
# every harness that needs them (not compiled again for each).
FUZZ_OBJ_FLAGS = -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
  -fno-sanitize-recover=undefined $(WARN) -Isrc -I$(LUA_INC) $(CURL_INC:%=-I%)
FUZZ_CORE = $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_ALL = $(SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BINS = $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/obj/%.o: %.c $(HDR) | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_OBJ_FLAGS) -c $< -o $@

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-deps fuzz-repro fuzz-findings

fuzz-deps:
	@tools/deps build
	@fuzz/deps.sh

fuzz-build: fuzz-deps $(FUZZ_BINS)
# clang must be there before any harness is compiled (make -j)
$(FUZZ_BINS): | fuzz-deps

# one file of the library each: what these harnesses parse
$(FUZZ_BUILD)/fuzz_retry_after: fuzz/retry_after.c fuzz/fuzz.h src/lib/retry_after.c src/lib/retry_after.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $< src/lib/retry_after.c -o $@ -lcurl
$(FUZZ_BUILD)/fuzz_url: fuzz/url.c fuzz/fuzz.h src/lib/url.c src/lib/url.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $< src/lib/url.c -o $@ -lcurl
$(FUZZ_BUILD)/fuzz_buf: fuzz/buf.c fuzz/fuzz.h src/lib/buf.c src/lib/buf.h src/lib/redact.c src/lib/redact.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $< src/lib/buf.c src/lib/redact.c -o $@ -lcrypto

# judge.c with the library it reads (the engine's random source): no Lua
$(FUZZ_BUILD)/fuzz_judge: fuzz/judge.c fuzz/fuzz.h $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $< $(FUZZ_CORE) -o $@ $(LIBS)

# the file store of rate.shared, alone
$(FUZZ_BUILD)/fuzz_store_file: fuzz/store_file.c fuzz/fuzz.h src/lib/store_file.c src/lib/ratelimit.c src/lib/ratelimit.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $< src/lib/store_file.c src/lib/ratelimit.c -o $@

# the library's answer path (reply, judge, state machine, events), and the
# bindings' converters of results and errors into Lua tables (src/record.c)
$(FUZZ_BUILD)/fuzz_reply: fuzz/reply.c fuzz/fuzz.h $(FUZZ_CORE) $(FUZZ_BUILD)/obj/src/record.o
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $< $(FUZZ_CORE) $(FUZZ_BUILD)/obj/src/record.o -o $@ $(LIBS) -llua$(LUA_VERSION) -lm

# the Lua harnesses: one runner, the script named at build time
FUZZ_LUA_BUILD = $(FUZZ_CC) $(FUZZ_FLAGS) -DFUZZ_ROOT='"$(CURDIR)"' -DFUZZ_SCRIPT='"$(CURDIR)/fuzz/lua/$*.lua"'
$(addprefix $(FUZZ_BUILD)/fuzz_,$(filter-out $(FUZZ_LUA_CORE),$(FUZZ_LUA))): $(FUZZ_BUILD)/fuzz_%: fuzz/lua_runner.c fuzz/lua/%.lua
	@mkdir -p $(dir $@)
	$(FUZZ_LUA_BUILD) $< -o $@ -llua$(LUA_VERSION) -lm

# the Lua harnesses whose modules call the C core (HMAC, the record reader, fsync, a whole client, the UTF-8
# check of modkie.encoding): built in, with the sanitizers
$(FUZZ_LUA_CORE:%=$(FUZZ_BUILD)/fuzz_%): $(FUZZ_BUILD)/fuzz_%: fuzz/lua_runner.c fuzz/lua/%.lua $(FUZZ_ALL)
	@mkdir -p $(dir $@)
	$(FUZZ_LUA_BUILD) -DFUZZ_WITH_CORE $< $(FUZZ_ALL) -o $@ $(LIBS) -llua$(LUA_VERSION) -lm

fuzz: fuzz-build
	@fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_NAMES)

fuzz-smoke: fuzz-build
	@fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) $(FUZZ_NAMES)

fuzz-repro: fuzz-build
	@test -n "$(FUZZ_NAME)" -a -n "$(INPUT)" || { echo "usage: make fuzz-repro FUZZ_NAME=<harness> INPUT=<file>" >&2; exit 2; }
	$(FUZZ_BUILD)/fuzz_$(FUZZ_NAME) -runs=1 $(INPUT)

fuzz-findings: fuzz-build
	@fuzz/findings.sh $(FUZZ_BUILD)
