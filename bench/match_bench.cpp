// Matching throughput on one core: changes to a chat `messages` table against N subscriptions.
//
//   ./pgpush.sh build && build/bench/match_bench
//
//   indexed/N    N subscriptions `WHERE room_id = K`, ten per room, so each change hits ~10
//   update/N     the same, for UPDATEs (old and new row both looked up, UPDATE rule applied)
//   in_claim/N   rule `row.room_id in auth.rooms` with 5 rooms per user, query without WHERE
//   scan/1000    1,000 subscriptions `WHERE room_id >= K AND room_id < K + 10` (a range: not
//                indexable), so every change evaluates all of them; each change hits ~10
//   like_*/N     the LIKE attack: 20 subscriptions whose filter is a LIKE pattern of N characters
//                built to defeat a backtracking matcher, against one row whose body is 30,000
//                'a's (time per change = the stall every client of the hub sees). like_suffix is
//                '%' + (N-2) 'a' + 'b'; like_inner adds a final '%'; like_underscore is
//                '%' + ('a_' repeated) + 'b%'. N = 1000 is the longest pattern the engine accepts
//                (rules::like_max_pattern_chars); 16000 is refused at subscribe (bad_query).
// items_per_second = changes matched per second. Goals: >= 1M/s indexed; indexed/100000 within
// 1.5x of indexed/100.

#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include "rules/matcher.hpp"
#include "rules/plan.hpp"

using namespace pgpush::rules;

namespace {

const table_schema& schema() {
    static const table_schema s{"public",
                                "messages",
                                {{"id", column_family::integer, "bigint"},
                                 {"room_id", column_family::integer, "integer"},
                                 {"sender_id", column_family::integer, "integer"},
                                 {"body", column_family::text, "text"}}};
    return s;
}

std::shared_ptr<const rule_set> load(const char* rows) {
    std::string yaml = std::string("tables:\n  messages:\n    rows: \"") + rows +
                       "\"\n    columns: [id, room_id, sender_id, body]\n";
    return load_rules(yaml).rules;
}

struct fixture {
    std::vector<subscription_plan> plans;
    matcher m;
    std::vector<std::vector<value>> rows;
};

// Builds `n` subscriptions from query(i) and claims(i), and 512 rows with room_id in [0, rooms)
// (few enough to leave the cache to the matcher).
std::unique_ptr<fixture> build(int n, int rooms, const std::shared_ptr<const rule_set>& rules,
                               const std::function<std::string(int)>& query,
                               const std::function<nlohmann::json(int)>& claims) {
    auto f = std::make_unique<fixture>();
    f->plans.reserve(static_cast<std::size_t>(n));
    auto lookup = [](std::string_view) { return &schema(); };
    for (int i = 0; i < n; ++i) {
        auto sql = query(i);
        auto c = claims(i);
        auto r = plan_subscription(rules, {sql, &c, {}}, lookup);
        f->plans.push_back(std::move(std::get<subscription_plan>(r)));
        f->m.add(static_cast<subscription_id>(i), schema(), f->plans.back().filter.get());
    }
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> room(0, rooms - 1);
    static const char* bodies[] = {"hello", "see you at 5", "ok", "lunch?"};
    for (int i = 0; i < 512; ++i) {
        f->rows.push_back({value::integer(i), value::integer(room(rng)), value::integer(i % 97),
                           value::text(bodies[i % 4])});
    }
    return f;
}

void run(benchmark::State& state, fixture& f, change_kind kind) {
    std::vector<hit> hits;
    std::size_t i = 0, total = 0;
    for (auto _ : state) {
        hits.clear();
        const auto& row = f.rows[i & 511];
        const auto& old = f.rows[(i + 7) & 511];
        f.m.match("public.messages", kind, row,
                  kind == change_kind::update ? std::span<const value>(old)
                                              : std::span<const value>{},
                  hits);
        total += hits.size();
        benchmark::DoNotOptimize(hits.data());
        ++i;
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
    state.counters["hits_per_change"] =
        static_cast<double>(total) / static_cast<double>(state.iterations());
}

void indexed(benchmark::State& state, change_kind kind) {
    const int n = static_cast<int>(state.range(0));
    static auto rules = load("true");
    auto f = build(
        n, std::max(1, n / 10), rules,
        [](int i) { return "SELECT * FROM messages WHERE room_id = " + std::to_string(i / 10); },
        [](int i) {
            return nlohmann::json{{"sub", i}};
        });
    run(state, *f, kind);
}

void indexed_insert(benchmark::State& state) {
    indexed(state, change_kind::insert);
}
void indexed_update(benchmark::State& state) {
    indexed(state, change_kind::update);
}

void in_claim(benchmark::State& state) {
    const int n = static_cast<int>(state.range(0));
    static auto rules = load("row.room_id in auth.rooms");
    const int rooms = std::max(1, n / 2); // 5 rooms per user, 10 users per room on average
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> room(0, rooms - 1);
    std::vector<nlohmann::json> claims;
    for (int i = 0; i < n; ++i) {
        nlohmann::json r = nlohmann::json::array();
        for (int k = 0; k < 5; ++k)
            r.push_back(room(rng));
        claims.push_back({{"sub", i}, {"rooms", r}});
    }
    auto f = build(
        n, rooms, rules, [](int) { return std::string("SELECT * FROM messages"); },
        [&](int i) { return claims[static_cast<std::size_t>(i)]; });
    run(state, *f, change_kind::insert);
}

void scan(benchmark::State& state) {
    const int n = static_cast<int>(state.range(0));
    static auto rules = load("true");
    auto f = build(
        n, n, rules,
        [](int i) {
            return "SELECT * FROM messages WHERE room_id >= " + std::to_string(i) +
                   " AND room_id < " + std::to_string(i + 10);
        },
        [](int i) {
            return nlohmann::json{{"sub", i}};
        });
    run(state, *f, change_kind::insert);
}

// A LIKE pattern of `n` characters: '%', then `body` repeated to fill, then `tail`.
std::string like_pattern(std::size_t n, std::string_view body, std::string_view tail) {
    std::string p = "%";
    while (p.size() + body.size() + tail.size() <= n)
        p += body;
    while (p.size() + tail.size() < n)
        p += 'a';
    return p + std::string(tail);
}

void like_attack(benchmark::State& state, std::string_view body, std::string_view tail) {
    static auto rules = load("true");
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::string query =
        "SELECT * FROM messages WHERE body LIKE '" + like_pattern(n, body, tail) + "'";
    auto lookup = [](std::string_view) { return &schema(); };
    const nlohmann::json claims = {{"sub", 1}};
    std::vector<subscription_plan> plans;
    matcher m;
    for (int i = 0; i < 20; ++i) {
        auto r = plan_subscription(rules, {query, &claims, {}}, lookup);
        if (auto* e = std::get_if<plan_error>(&r)) {
            state.SkipWithError(("refused at subscribe: " + e->message.substr(0, 60)).c_str());
            return;
        }
        plans.push_back(std::move(std::get<subscription_plan>(r)));
        m.add(static_cast<subscription_id>(i), schema(), plans.back().filter.get());
    }
    const std::string text(30'000, 'a');
    const std::vector<value> row = {value::integer(1), value::integer(1), value::integer(1),
                                    value::text(text)};
    std::vector<hit> hits;
    for (auto _ : state) {
        hits.clear();
        m.match("public.messages", change_kind::insert, row, {}, hits);
        benchmark::DoNotOptimize(hits.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void like_suffix(benchmark::State& state) {
    like_attack(state, "a", "b");
}
void like_inner(benchmark::State& state) {
    like_attack(state, "a", "b%");
}
void like_underscore(benchmark::State& state) {
    like_attack(state, "a_", "b%");
}

BENCHMARK(indexed_insert)->Name("indexed")->Arg(100)->Arg(10'000)->Arg(100'000);
BENCHMARK(indexed_update)->Name("update")->Arg(100)->Arg(10'000)->Arg(100'000);
BENCHMARK(in_claim)->Arg(100)->Arg(10'000)->Arg(100'000);
BENCHMARK(scan)->Arg(1'000);
BENCHMARK(like_suffix)->Arg(1'000)->Arg(16'000)->Unit(benchmark::kMillisecond);
BENCHMARK(like_inner)->Arg(1'000)->Arg(16'000)->Unit(benchmark::kMillisecond);
BENCHMARK(like_underscore)->Arg(1'000)->Arg(16'000)->Unit(benchmark::kMillisecond);

} // namespace

int main(int argc, char** argv) {
    std::printf("match_bench: one core, rows pre-converted to values\n");
    std::printf("command: build/bench/match_bench %s\n", argc > 1 ? argv[1] : "");
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
