// How the Python runtime writes values into its messages, so the C API's messages are the same:
// repr() of a str ('t2x') and str() of a float (1.0, 0.5, nan, 1e-05).
#pragma once

#include <string>

namespace nuwa {

std::string py_repr(const std::string& text);
std::string py_float(double value);

}  // namespace nuwa
