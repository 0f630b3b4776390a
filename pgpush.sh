#!/usr/bin/env bash
# pgpush's one entry point. Two commands matter (see README.md):
#
#   ./pgpush.sh demo   install what is missing, build, start a throwaway PostgreSQL, run the demo
#   ./pgpush.sh test   install what is missing, build, run every test (what CI runs)
#
# Others: deps, build, unit, fuzz [SECONDS], bench, format, clean. Set BUILD_DIR to build
# somewhere other than ./build; JOBS for parallelism (default: cores).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
ASAN_DIR=${ASAN_DIR:-$ROOT/build-asan}
FUZZ_DIR=${FUZZ_DIR:-$ROOT/build-fuzz}
JOBS=${JOBS:-$(nproc)}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Debian 12 packages the build, the tests and the demo need.
PACKAGES=(
  g++ cmake make pkg-config git
  libpq-dev libpqxx-dev libboost1.81-dev nlohmann-json3-dev libyaml-cpp-dev libssl-dev
  libjwt-dev libspdlog-dev libfmt-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  postgresql-15 postgresql-client-15
  clang libclang-rt-14-dev clang-format
)

deps() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # pgpush starts its own throwaway clusters; do not let the package create and start a system one.
  if printf '%s\n' "${missing[@]}" | grep -q '^postgresql-15$'; then
    $sudo mkdir -p /etc/postgresql-common
    grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
      echo 'create_main_cluster = false' | $sudo tee -a /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

configure() { # dir, cmake args...
  local dir=$1; shift
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
}

build() {
  say "building (release) in $BUILD_DIR"
  configure "$BUILD_DIR" -DPGPUSH_TESTS=ON -DPGPUSH_BENCH=ON -DPGPUSH_SANITIZE=OFF -DPGPUSH_FUZZ=OFF
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

build_asan() {
  say "building unit tests with AddressSanitizer + UndefinedBehaviorSanitizer in $ASAN_DIR"
  configure "$ASAN_DIR" -DPGPUSH_SANITIZE=ON -DPGPUSH_BENCH=OFF -DPGPUSH_TESTS=ON
  cmake --build "$ASAN_DIR" -j "$JOBS" --target unit_cdc unit_rules unit_push unit_log
}

build_fuzz() {
  say "building fuzz targets (clang, libFuzzer) in $FUZZ_DIR"
  CXX=clang++ configure "$FUZZ_DIR" -DPGPUSH_FUZZ=ON
  cmake --build "$FUZZ_DIR" -j "$JOBS"
}

fuzz() { # seconds per target
  local seconds=${1:-60}
  build_fuzz
  for target in pgoutput_fuzz value_json_fuzz rules_fuzz log_record_fuzz jwt_fuzz protocol_fuzz; do
    local name=${target%_fuzz}
    local corpus
    corpus=$(mktemp -d)
    say "fuzzing $target for ${seconds}s"
    # The committed seeds are read-only input; new finds go to a scratch corpus.
    (cd "$FUZZ_DIR" && "./tests/fuzz/$target" -max_total_time="$seconds" -print_final_stats=0 \
      "$corpus" "$ROOT/tests/fuzz/corpus/$name" 2>&1 | grep -E "^(Done|==|SUMMARY)" || true)
    rm -rf "$corpus"
    if ls "$FUZZ_DIR"/crash-* "$FUZZ_DIR"/leak-* "$FUZZ_DIR"/timeout-* >/dev/null 2>&1; then
      echo "fuzz: $target found a failing input in $FUZZ_DIR" >&2
      return 1
    fi
  done
}

format() { # check (default) or fix
  local files
  files=$(git ls-files '*.cpp' '*.hpp')
  if [ "${1:-check}" = fix ]; then
    echo "$files" | xargs clang-format -i
  else
    echo "$files" | xargs clang-format --dry-run -Werror
  fi
}

unit_asan() {
  build_asan
  say "unit tests under ASan+UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$ASAN_DIR" -L unit --output-on-failure
}

bench_smoke() {
  say "benchmark smoke (tiny sizes; real figures: ./pgpush.sh bench)"
  "$BUILD_DIR/bench/decode_bench" --benchmark_min_time=0.01 >/dev/null
  "$BUILD_DIR/bench/match_bench" --benchmark_min_time=0.01 >/dev/null
  DRAIN_ROWS=20000 DRAIN_RUNS=1 "$BUILD_DIR/tests/pg_sandbox" -- bench/drain_bench.sh "$BUILD_DIR" >/dev/null
  LOG_ROWS=5000 LOG_RUNS=1 "$BUILD_DIR/tests/pg_sandbox" -- bench/log_bench.sh "$BUILD_DIR" >/dev/null
  LOAD_CLIENTS=50 LOAD_RATE=200 LOAD_SECONDS=2 LOAD_ROOMS=10 \
    "$BUILD_DIR/tests/pg_sandbox" -- bench/load_bench.sh "$BUILD_DIR" >/dev/null
}

demo() {
  deps
  build
  say "starting a throwaway PostgreSQL and the demo (Ctrl-C to stop)"
  exec "$BUILD_DIR/tests/pg_sandbox" -- examples/chat_demo.sh "$BUILD_DIR"
}

test_all() {
  local started=$SECONDS
  deps
  say "checking formatting"
  format check
  build
  unit_asan
  fuzz "${FUZZ_SECONDS:-20}"
  bench_smoke
  say "unit and integration tests (real PostgreSQL)"
  ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
  say "all checks passed in $((SECONDS - started))s"
}

case "${1:-}" in
  demo) demo ;;
  test) test_all ;;
  deps) deps ;;
  build) deps; build ;;
  unit) deps; build; ctest --test-dir "$BUILD_DIR" -L unit --output-on-failure ;;
  asan) deps; unit_asan ;;
  fuzz) deps; fuzz "${2:-300}" ;;
  bench) deps; build; bench/run_all.sh "$BUILD_DIR" ;;
  format) format "${2:-check}" ;;
  clean) rm -rf "$BUILD_DIR" "$ASAN_DIR" "$FUZZ_DIR" ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
