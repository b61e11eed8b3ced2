#include "tessera/core/error.h"

namespace tessera {

namespace {
std::string format_argument_error(std::string_view argument, std::string_view expected,
                                  std::string_view actual) {
  std::string message = "tessera: argument '";
  message.append(argument);
  message.append("': expected ");
  message.append(expected);
  message.append(", got ");
  message.append(actual);
  return message;
}
}  // namespace

Error::Error(std::string_view argument, std::string_view expected, std::string_view actual)
    : std::runtime_error(format_argument_error(argument, expected, actual)),
      argument_(argument) {}

Error::Error(const std::string& message) : std::runtime_error(message) {}

void throw_argument_error(std::string_view argument, std::string_view expected,
                          std::string_view actual) {
  throw Error(argument, expected, actual);
}

std::string element_text(std::string_view name, std::size_t index, int64_t value) {
  // Built with += : GCC 12 warns (-Wrestrict, a false positive) on
  // "literal" + std::string temporaries.
  std::string text(name);
  text += '[';
  text += std::to_string(index);
  text += "] = ";
  text += std::to_string(value);
  return text;
}

}  // namespace tessera
