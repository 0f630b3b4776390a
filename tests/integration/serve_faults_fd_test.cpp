#include "tests/integration/serve_fixture.hpp"
