// Decode throughput on one core, over a captured pgoutput stream of a chat workload
// (bench/data/chat_stream.bin, made by bench/capture_chat_stream.sh).
//
//   ./pgpush.sh build && build/bench/decode_bench
//
// Stages, each including the ones before it:
//   frames:  walsender framing + pgoutput decoding into message structs
//   changes: + change assembly (relation cache, positions, TOAST filling)
//   json:    + one JSON line per change, as `pgpush tail` prints it
// items_per_second counts row changes.

#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "cdc/change_assembler.hpp"
#include "cdc/change_json.hpp"
#include "cdc/pg_time.hpp"
#include "cdc/pgoutput_decoder.hpp"
#include "cdc/walsender_protocol.hpp"

using namespace pgpush::cdc;

namespace {

struct capture {
    std::string bytes;
    std::vector<std::span<const std::byte>> frames;
    std::size_t changes = 0;
};

const capture& chat_stream() {
    static const capture c = [] {
        capture out;
        std::ifstream f(PGPUSH_CHAT_STREAM, std::ios::binary);
        if (!f) throw std::runtime_error("cannot read " PGPUSH_CHAT_STREAM);
        out.bytes.assign(std::istreambuf_iterator<char>(f), {});
        std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(out.bytes.data()),
                                        out.bytes.size());
        while (rest.size() >= 4) {
            std::uint32_t n = 0;
            for (int i = 0; i < 4; ++i)
                n = (n << 8) | static_cast<std::uint8_t>(rest[i]);
            out.frames.push_back(rest.subspan(4, n));
            rest = rest.subspan(4 + n);
        }
        for (auto frame : out.frames) {
            auto m = walsender::decode(frame);
            if (auto* x = std::get_if<walsender::xlog_data>(&m)) {
                auto tag = static_cast<char>(x->payload[0]);
                if (tag == 'I' || tag == 'U' || tag == 'D') ++out.changes;
            }
        }
        return out;
    }();
    return c;
}

class counting_sink final : public change_sink {
public:
    void on_change(const change&) override { ++changes; }
    std::size_t changes = 0;
};

class json_sink final : public change_sink {
public:
    explicit json_sink(const type_catalog& t) : types(t) {}
    void on_begin(const transaction_info& t) override {
        commit_time.clear();
        append_rfc3339_json(commit_time, t.commit_time);
    }
    void on_change(const change& c) override {
        append_change_json(out, types, c, commit_time);
        out.push_back('\n');
        if (out.size() > (1 << 20)) out.clear();
    }
    const type_catalog& types;
    std::string out;
    std::string commit_time;
};

void frames(benchmark::State& state) {
    const auto& c = chat_stream();
    for (auto _ : state) {
        for (auto frame : c.frames) {
            auto m = walsender::decode(frame);
            if (auto* x = std::get_if<walsender::xlog_data>(&m)) {
                auto msg = pgoutput::decode(x->payload);
                benchmark::DoNotOptimize(msg);
            }
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.changes));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.bytes.size()));
}

template <typename Sink>
void run_pipeline(benchmark::State& state, Sink& sink, type_catalog& types) {
    const auto& c = chat_stream();
    for (auto _ : state) {
        change_assembler assembler(types, sink);
        for (auto frame : c.frames) {
            auto m = walsender::decode(frame);
            if (auto* x = std::get_if<walsender::xlog_data>(&m)) {
                auto msg = pgoutput::decode(x->payload);
                assembler.feed(msg);
            }
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.changes));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.bytes.size()));
}

void changes(benchmark::State& state) {
    type_catalog types;
    counting_sink sink;
    run_pipeline(state, sink, types);
}

void json_lines(benchmark::State& state) {
    type_catalog types;
    json_sink sink(types);
    run_pipeline(state, sink, types);
}

BENCHMARK(frames)->Unit(benchmark::kMillisecond);
BENCHMARK(changes)->Unit(benchmark::kMillisecond);
BENCHMARK(json_lines)->Unit(benchmark::kMillisecond);

} // namespace

int main(int argc, char** argv) {
    const auto& c = chat_stream();
    std::printf("decode_bench: %zu frames, %zu row changes, %zu bytes from %s\n", c.frames.size(),
                c.changes, c.bytes.size(), PGPUSH_CHAT_STREAM);
    std::printf("command: build/bench/decode_bench %s\n", argc > 1 ? argv[1] : "");
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
