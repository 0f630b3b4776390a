#pragma once

#include <algorithm>
#include <chrono>
#include <random>

namespace pgpush::cdc {

// Exponential backoff with jitter for reconnects: min, 2*min, 4*min ... capped at max, each delay
// drawn from [d/2, d] so that many engines restarting together do not reconnect in step.
class backoff {
public:
    backoff(std::chrono::milliseconds min, std::chrono::milliseconds max)
        : min_(min), max_(std::max(min, max)), next_(min) {}

    std::chrono::milliseconds next() {
        auto d = next_;
        next_ = std::min(max_, next_ * 2);
        std::uniform_int_distribution<long> pick(d.count() / 2, d.count());
        return std::chrono::milliseconds(pick(rng_));
    }

    void reset() { next_ = min_; }

private:
    std::chrono::milliseconds min_, max_, next_;
    std::minstd_rand rng_{std::random_device{}()};
};

} // namespace pgpush::cdc
