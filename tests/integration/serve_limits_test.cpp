// `pgpush serve` end to end: limits.

#include "tests/integration/serve_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;

} // namespace
} // namespace pgpush::testing
