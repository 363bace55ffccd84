#include "services/ingest/decode.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "services/common/records.h"
#include "services/common/text.h"
#include "starling/v1/ingest.pb.h"

namespace starling::ingest {

using google::protobuf::Message;
using nlohmann::json;

Result<BodyFormat> body_format(std::string_view content_type) {
  auto type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  std::string lower(type);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.empty() || lower == "application/json") return BodyFormat::kJson;
  if (lower == "application/x-ndjson" || lower == "application/ndjson" || lower == "application/jsonl") {
    return BodyFormat::kNdjson;
  }
  if (lower == "application/x-protobuf" || lower == "application/protobuf") return BodyFormat::kProtobuf;
  return fail(Errc::kInvalidArgument,
              fmt::format("unsupported Content-Type '{}'; send application/json, application/x-ndjson or "
                          "application/x-protobuf (a starling.v1.EventBatch)",
                          type));
}

namespace {

// nlohmann's message says "syntax error while parsing value - invalid literal;
// last read: 'x'" and the byte offset; add line and column.
std::string position(std::string_view body, std::size_t byte) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < byte && i < body.size(); ++i) {
    if (body[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return fmt::format("line {}, column {}", line, col);
}

void convert(const PipelineConfig& p, const json& value, std::size_t index, Decoded& out) {
  auto rec = record_from_json(p, value, index);
  if (rec) {
    out.records.push_back({index, std::move(*rec)});
  } else {
    out.refused.push_back(std::move(rec.error()));
  }
}

}  // namespace

Result<Decoded> decode_body(const PipelineConfig& p, BodyFormat format, std::string_view body) {
  Decoded out;
  switch (format) {
    case BodyFormat::kJson: {
      // Checked before parsing: nothing past this recurses deeper.
      if (const auto at = json_too_deep(body)) {
        return fail(Errc::kInvalidArgument,
                    fmt::format("the JSON nests deeper than {} levels (at {}); records are flat", kMaxJsonDepth,
                                position(body, *at)));
      }
      json doc;
      try {
        doc = json::parse(body);
      } catch (const json::parse_error& e) {
        return fail(
            Errc::kInvalidArgument,
            fmt::format("invalid JSON at {}: {}", position(body, e.byte ? e.byte - 1 : 0), excerpt(e.what(), 200)));
      } catch (const json::exception& e) {  // e.g. a number beyond a double (found by the fuzzer)
        return fail(Errc::kInvalidArgument, fmt::format("invalid JSON: {}", excerpt(e.what(), 200)));
      }
      if (doc.is_object()) {
        convert(p, doc, 0, out);
      } else if (doc.is_array()) {
        for (std::size_t i = 0; i < doc.size(); ++i) convert(p, doc[i], i, out);
      } else {
        return fail(Errc::kInvalidArgument,
                    "expected a JSON object or an array of objects, got " + std::string(doc.type_name()));
      }
      break;
    }
    case BodyFormat::kNdjson: {
      std::size_t line = 0;
      while (!body.empty()) {
        const auto nl = body.find('\n');
        auto text = body.substr(0, nl);
        body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
        if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
        const auto index = line++;
        if (text.find_first_not_of(" \t") == std::string_view::npos) continue;  // blank lines separate nothing
        if (const auto at = json_too_deep(text)) {
          out.refused.push_back({index, "",
                                 fmt::format("the JSON on line {} nests deeper than {} levels (at column {})",
                                             index + 1, kMaxJsonDepth, *at + 1)});
          continue;
        }
        try {
          convert(p, json::parse(text), index, out);
        } catch (const json::parse_error& e) {
          out.refused.push_back({index, "",
                                 fmt::format("invalid JSON on line {} at column {}: {}", index + 1,
                                             e.byte == 0 ? 1 : e.byte, excerpt(e.what(), 200))});
        } catch (const json::exception& e) {
          out.refused.push_back(
              {index, "", fmt::format("invalid JSON on line {}: {}", index + 1, excerpt(e.what(), 200))});
        }
      }
      break;
    }
    case BodyFormat::kProtobuf: {
      v1::EventBatch batch;
      if (!batch.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
        return fail(Errc::kInvalidArgument, "the body is not a valid starling.v1.EventBatch");
      }
      for (int i = 0; i < batch.records_size(); ++i) {
        const auto idx = static_cast<std::size_t>(i);
        auto parsed = record_from_bytes(p, batch.records(i));
        if (!parsed) {
          out.refused.push_back({idx, "", parsed.error().message});
          continue;
        }
        auto msg = std::move(*parsed);
        // Fields this type does not have arrive as unknown fields: refuse them
        // as JSON refuses an unknown name.
        const auto& unknown = msg->GetReflection()->GetUnknownFields(*msg);
        if (unknown.field_count() > 0) {
          out.refused.push_back({idx, fmt::format("#{}", unknown.field(0).number()),
                                 fmt::format("field number {} is not a field of {} (or has another wire type)",
                                             unknown.field(0).number(), p.message_type)});
          continue;
        }
        out.records.push_back({idx, std::move(msg)});
      }
      break;
    }
  }
  // Whatever the format: a record with NUL in a text field is refused.
  std::vector<Record> kept;
  kept.reserve(out.records.size());
  for (auto& r : out.records) {
    if (auto e = nul_in_text(*r.message, r.index)) {
      out.refused.push_back(std::move(*e));
    } else {
      kept.push_back(std::move(r));
    }
  }
  out.records = std::move(kept);
  std::stable_sort(out.refused.begin(), out.refused.end(),
                   [](const FieldError& a, const FieldError& b) { return a.index < b.index; });
  if (out.count() == 0) return fail(Errc::kInvalidArgument, "the body holds no records");
  return out;
}

}  // namespace starling::ingest
