#pragma once
#include <string>

namespace starling {

/// A random 128-bit identifier as 32 lowercase hex digits (saga ids, trace ids).
std::string random_id();

}  // namespace starling
