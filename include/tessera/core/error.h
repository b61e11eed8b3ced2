// tessera::Error: every argument problem and every CUDA failure surfaces as
// one exception type whose message names the argument, what was expected and
// what came, so a serving engine can log it and a Python binding can map it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tessera {

class Error : public std::runtime_error {
 public:
  // An argument error: "tessera: argument 'q': expected <expected>, got <actual>".
  Error(std::string_view argument, std::string_view expected, std::string_view actual);
  // Any other failure (CUDA error, internal limit); argument() is empty.
  explicit Error(const std::string& message);

  const std::string& argument() const noexcept { return argument_; }

 private:
  std::string argument_;
};

[[noreturn]] void throw_argument_error(std::string_view argument, std::string_view expected,
                                       std::string_view actual);

// "name[index] = value": how errors point at one entry of an index array.
std::string element_text(std::string_view name, std::size_t index, int64_t value);

}  // namespace tessera

// Checks a run-time condition on an argument; the message strings are only
// built when the check fails.
#define TESSERA_CHECK_ARG(cond, argument, expected, actual)              \
  do {                                                                   \
    if (!(cond)) ::tessera::throw_argument_error((argument), (expected), \
                                                 (actual));              \
  } while (0)
