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

}  // namespace tessera
