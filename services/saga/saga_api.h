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
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "services/common/http.h"
#include "services/saga/coordinator.h"
#include "services/saga/saga_store.h"

namespace starling::saga {

/// The partitions of starling.saga this instance owns now. The consumer loop
/// sets it on every assignment and revocation; the API's lists, totals and
/// consistency reports count only sagas of these partitions, so that the
/// answers of several coordinators in one group add up to the whole pipeline
/// once, without the stale copies an instance keeps of partitions it lost.
/// Until the first set() every partition counts (a store read without a
/// group: tests, tools).
class Ownership {
 public:
  void set(std::set<int32_t> partitions) {
    std::lock_guard lock(mu_);
    owned_ = std::move(partitions);
  }
  bool owns(int32_t partition) const {
    std::lock_guard lock(mu_);
    return !owned_ || owned_->contains(partition);
  }

 private:
  mutable std::mutex mu_;
  std::optional<std::set<int32_t>> owned_;
};

/// Reads the store only; safe beside the consumer loop. `clock` gives the
/// default end of a consistency report. With `owned`, lists and reports skip
/// sagas of partitions it does not own, and GET /v1/sagas/{id} says `owned`.
HttpResponse handle_saga_api(SagaStore& store, const HttpRequest& req, const Clock& clock,
                             const Ownership* owned = nullptr);

inline constexpr std::size_t kPageMax = 1000;

/// The OpenAPI 3.1 document of this API (services/saga/openapi.json).
const std::string& openapi_json();

}  // namespace starling::saga
