// `pgpush serve` end to end: auth.

#include "tests/integration/serve_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;

} // namespace
} // namespace pgpush::testing
