#pragma once
// Client bytes made safe to echo, and bounds checked before any recursion.
// Every byte a client sends is untrusted: a path, a query value, a header, an
// MQTT topic or a body string may hold bytes that are not UTF-8, and a JSON
// body may nest deeper than any decoder's stack.

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace starling {

/// How deep a JSON document a client may send: objects and arrays nested in
/// each other, the outermost counting 1. Records are flat; 64 is plenty.
inline constexpr std::size_t kMaxJsonDepth = 64;

/// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code
/// points past U+10FFFF).
bool is_utf8(std::string_view s);

/// `s` with every byte that does not start or belong to a well-formed UTF-8
/// sequence replaced by U+FFFD: safe to put in a log line or a JSON string.
std::string utf8_safe(std::string_view s);

/// At most `max` bytes of `s`, made UTF-8-safe, with "…" where it was cut: how
/// an error message or a log line quotes a client's value.
std::string excerpt(std::string_view s, std::size_t max = 64);

/// RFC 3986 percent-encoding of everything but unreserved characters: a query
/// parameter's name or value, or a path segment.
std::string url_encode(std::string_view s);

/// The non-empty items of a comma-separated list ("a,,b" gives a and b): a
/// flag that takes several values, like --url or --instances.
std::vector<std::string> split_commas(std::string_view s);

/// `j` as compact (indent -1) or indented JSON text. Strings that are not
/// UTF-8 have their bad bytes replaced by U+FFFD instead of throwing, as
/// nlohmann's plain dump() does: use this for anything that echoes client bytes.
std::string json_text(const nlohmann::json& j, int indent = -1);

/// Where the JSON text `text` first opens its (limit+1)th nested object or
/// array, scanning bytes only (no recursion, strings skipped): the byte
/// offset, or nullopt when it never nests deeper than `limit`.
std::optional<std::size_t> json_too_deep(std::string_view text, std::size_t limit = kMaxJsonDepth);

}  // namespace starling
