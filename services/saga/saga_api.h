#pragma once
// The saga coordinator's read-only HTTP API.
//   GET /v1/sagas/{id}                          state, counts per step, timeline, reasons, explanation
//   GET /v1/sagas?state=&pipeline=&since=&limit=&page_token=
//                                               paged in saga-id order, with totals of every match
//   GET /v1/pipelines/{p}/consistency?from=&to=&window=
//                                               per window of creation time: accepted = loaded +
//                                               rejected + in flight, with the sagas to look at
//   GET /openapi.json                           this API's OpenAPI 3.1 document (openapi.json)
// Bad parameters answer 400 with a JSON error naming the parameter.

#include <cstdint>
#include <string>

#include "services/common/http.h"
#include "services/saga/coordinator.h"
#include "services/saga/saga_store.h"

namespace starling::saga {

/// Reads the store only; safe beside the consumer loop. `clock` gives the
/// default end of a consistency report.
HttpResponse handle_saga_api(SagaStore& store, const HttpRequest& req, const Clock& clock);

inline constexpr std::size_t kPageMax = 1000;

/// The OpenAPI 3.1 document of this API (services/saga/openapi.json).
const std::string& openapi_json();

}  // namespace starling::saga
