// Checks that an API call rejects its arguments with a tessera::Error naming
// the right one: the contract every entry point's validation tests assert.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace tessera::testing {

// The argument named by the tessera::Error that `call` throws; "<accepted>"
// if it returns normally.
std::string rejected_argument(const std::function<void()>& call);

// Adds a gtest failure unless `call` throws a tessera::Error naming `argument`.
void expect_argument_error(const std::function<void()>& call, std::string_view argument);

}  // namespace tessera::testing
