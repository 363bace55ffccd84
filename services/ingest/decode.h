#pragma once
// Request bodies to records of the pipeline's Protobuf type. Shared by the
// HTTP front door and the MQTT bridge, and fuzzed (tests/services/ingest/fuzz).
//
// Bodies: a JSON object, a JSON array of objects, NDJSON (one object per
// line), or a serialized starling.v1.EventBatch whose `records` each hold one
// serialized message of the pipeline's type. A record that does not convert is
// a FieldError naming its index and field; the others still convert. Only a
// body that cannot be split into records at all is an Error.

#include <google/protobuf/message.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "services/common/error.h"
#include "services/common/pipeline.h"
#include "services/common/records.h"

namespace starling::ingest {

enum class BodyFormat { kJson, kNdjson, kProtobuf };

/// From a Content-Type header ("" is JSON). The error names the type and
/// lists what is accepted (the front door answers 415).
Result<BodyFormat> body_format(std::string_view content_type);

struct Record {
  std::size_t index = 0;  // position in the body (NDJSON: line number - 1)
  std::unique_ptr<google::protobuf::Message> message;
};

struct Decoded {
  std::vector<Record> records;
  std::vector<FieldError> refused;
  std::size_t count() const { return records.size() + refused.size(); }
};

/// Splits and converts a body. A record with NUL in a text field is refused
/// (a warehouse would cut it there). Errors (invalid JSON with line and column, a
/// JSON value that is neither an object nor an array, an EventBatch that does
/// not parse, no records at all) have Errc::kInvalidArgument.
Result<Decoded> decode_body(const PipelineConfig& p, BodyFormat format, std::string_view body);

using starling::over_limits;
using starling::RecordLimits;

}  // namespace starling::ingest
