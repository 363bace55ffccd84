#pragma once
// `starling check` also validates each pipeline file against the published
// JSON Schema (schemas/pipeline.schema.json, compiled in), the one editors
// use: what an editor shows and what check says cannot drift apart unseen.
// The YAML is read as JSON the way YAML 1.2's core schema types it (a plain
// 42 is a number, "42" a string), after ${VAR} interpolation, and validated
// with valijson (Debian's libvalijson-dev, draft 7 rules: the schema keeps
// to what drafts 7 and 2020-12 read alike).

#include <string>
#include <vector>

namespace starling::cli {

/// The published schema's text.
const std::string& pipeline_schema();

/// What `schema` (JSON Schema text) finds wrong in `yaml` (a pipeline file's
/// text): "origin:line: path: message" each, in document order; empty when
/// it validates, or when the YAML does not parse (the pipeline parser
/// reports that, with its line). Throws std::invalid_argument for a schema
/// that is not JSON.
std::vector<std::string> schema_problems(const std::string& yaml, const std::string& origin,
                                         const std::string& schema = pipeline_schema());

}  // namespace starling::cli
