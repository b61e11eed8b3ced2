#include "support/argument_error.h"

#include <gtest/gtest.h>

#include "tessera/core/error.h"

namespace tessera::testing {

std::string rejected_argument(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& error) {
    return error.argument();
  }
  return "<accepted>";
}

void expect_argument_error(const std::function<void()>& call, std::string_view argument) {
  try {
    call();
    ADD_FAILURE() << "expected tessera::Error for argument '" << argument << "'";
  } catch (const Error& error) {
    EXPECT_EQ(error.argument(), argument) << error.what();
  }
}

}  // namespace tessera::testing
