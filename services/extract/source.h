#pragma once
// What starling-extract does with one API response, without any I/O: the
// window's URL, the records of a page (either shape) with the pipeline's map
// applied, the next page's URL, and a pulled record's stable event id.

#include <google/protobuf/message.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "services/common/error.h"
#include "services/common/pipeline.h"

namespace starling::extract {

/// One combination of each's values: name -> value (empty without each).
using Binding = std::vector<std::pair<std::string, std::string>>;

/// Every combination of the source's each: values, in declaration order (the
/// last name varies fastest); one empty binding when it has none.
std::vector<Binding> each_bindings(const HttpPollSource& s);

/// The source's url with ${since} and ${until} as RFC 3339 UTC (ms, "Z") and
/// each ${name} of `binding` as its value, percent-encoded.
std::string window_url(const HttpPollSource& s, int64_t since_ms, int64_t until_ms, const Binding& binding = {});

/// `url` with `params` added to its query (percent-encoded), each unless the
/// query has it already.
std::string with_query(const std::string& url, const std::vector<std::pair<std::string, std::string>>& params);

/// `url` as logs and errors may show it: the values of the source's
/// auth.query parameters replaced by ***.
std::string redact(const HttpPollSource& s, const std::string& url);

/// The next page's URL for page/offset paging: `first` (the window's first
/// URL, without the paging parameters) with page number / offset `position`
/// and the size parameter.
std::string paged_url(const HttpPollSource& s, const std::string& first, int64_t position);

struct Page {
  /// One JSON object per record, in the API's order, mapped (source.map):
  /// what record_from_json converts, exactly as if a device had sent it.
  std::vector<nlohmann::json> records;
  std::optional<std::string> next;  // the next page's URL
};

/// A response body to records. A body that is not JSON, nests deeper than
/// kMaxJsonDepth, or has no array (records) or object of equal-length arrays
/// (columns) where the source says is malformed: Errc::kInvalidArgument,
/// naming the pointer and what was there. Single records that are not objects
/// are kept (the converter refuses them, each with its reason).
Result<Page> parse_page(const HttpPollSource& s, std::string_view body);

/// A pulled record's event id: a hash of the pipeline, its device id and its
/// event time, so every poll of an overlapping window gives the same id (clean
/// dedupes it, load upserts by it). "x" and 32 hex digits.
std::string content_event_id(const PipelineConfig& p, const google::protobuf::Message& record);

/// 32 hex digits from a stable hash of `parts` (saga ids of pages).
std::string stable_id(const std::vector<std::string>& parts);

}  // namespace starling::extract
