#pragma once
// Converting device records to and from the pipeline's Protobuf type, and
// reading a record's special fields, all through reflection.

#include <google/protobuf/message.h>

#include <cstddef>
#include <expected>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "services/common/error.h"
#include "services/common/pipeline.h"

namespace starling {

/// An empty message of the pipeline's type.
std::unique_ptr<google::protobuf::Message> new_record(const PipelineConfig& p);

/// Why one record of a body did not convert.
struct FieldError {
  std::size_t index = 0;  // the record's position in its body (NDJSON: line number - 1)
  std::string field;      // dotted path ("event_time", "tags[2]"); "" for the record as a whole
  std::string reason;     // what was wrong and what was expected
};

/// One JSON object to the pipeline's type, field by field, exactly as a device
/// sends it: ingest's HTTP and MQTT bodies and `starling test`'s fixtures all
/// come through here. Unknown fields, wrong types and out-of-range numbers are
/// refused with the field's path. Field names may be the proto name or its
/// lowerCamel JSON name; null means unset.
std::expected<std::unique_ptr<google::protobuf::Message>, FieldError> record_from_json(const PipelineConfig& p,
                                                                                       const nlohmann::json& value,
                                                                                       std::size_t index = 0);

/// Decodes a payload of the pipeline's type into `into` (cleared first; a
/// message reused across payloads keeps its buffers).
Status parse_record(const PipelineConfig& p, const std::string& bytes, google::protobuf::Message& into);

/// Decodes a payload of the pipeline's type.
Result<std::unique_ptr<google::protobuf::Message>> record_from_bytes(const PipelineConfig& p, const std::string& bytes);

/// Protobuf's canonical JSON of a message (for tail, rejects, tests).
std::string record_to_json(const google::protobuf::Message& m);

/// A singular field's value as text ("" when unset), for reasons and logs.
std::string field_text(const google::protobuf::Message& m, const google::protobuf::FieldDescriptor* f);

/// Sets a singular field from text (a number, true/false, an enum value name,
/// a string, or RFC 3339 for a Timestamp). The error says what was expected.
Status set_field_text(google::protobuf::Message& m, const google::protobuf::FieldDescriptor* f,
                      const std::string& text);

/// Whether a field holds a google.protobuf.Timestamp.
bool is_timestamp(const google::protobuf::FieldDescriptor* f);

/// Reads a google.protobuf.Timestamp field as Unix ms (0 when unset).
int64_t timestamp_ms(const google::protobuf::Message& m, const google::protobuf::FieldDescriptor* f);

/// How large one accepted event may be. Every record a stage derives from an
/// event (its clean output with the changes, its rejection with a reason per
/// field) must still fit Kafka's message.max.bytes (1,000,000 by default):
/// with these defaults the largest is about 3 x 128 KiB. A record over either
/// limit is refused where it enters (ingest's door, extract's pull), never
/// accepted and then stuck downstream.
struct RecordLimits {
  std::size_t event_bytes = 128 << 10;  // the serialized record
  std::size_t field_bytes = 16 << 10;   // each string or bytes value, at any depth
};

/// The first limit `record` breaks (a field's, then the record's): a
/// FieldError naming the field (or "" for the whole record), its size and the
/// limit; nullopt when it fits.
std::optional<FieldError> over_limits(const google::protobuf::Message& record, const RecordLimits& limits,
                                      std::size_t index);

/// Text with NUL is valid UTF-8, but no warehouse keeps it whole (PostgreSQL's
/// text cannot hold it): the first string field holding one, refused with the
/// record where it enters, never cut later.
std::optional<FieldError> nul_in_text(const google::protobuf::Message& m, std::size_t index);

}  // namespace starling
