#pragma once
// Reading the saga API and the warehouse to tell whether a run is consistent:
// accepted = loaded + rejected + in flight, and the table holds what the
// sagas say was loaded.

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "services/common/error.h"

namespace starling::simulator {

struct SagaTotals {
  uint64_t sagas = 0;
  uint64_t accepted = 0;
  uint64_t loaded = 0;
  uint64_t rejected = 0;
  uint64_t in_flight = 0;
  std::map<std::string, uint64_t> by_state;
  uint64_t in(const std::string& state) const {
    auto it = by_state.find(state);
    return it == by_state.end() ? 0 : it->second;
  }
};

/// A pipeline's totals (pipeline "": every pipeline). Given every instance of
/// the coordinator group, one URL each, their totals are added: each counts
/// only the sagas of the partitions it owns (services/saga/saga_api.h).
Result<SagaTotals> fetch_totals(const std::vector<std::string>& saga_urls, const std::string& pipeline);
Result<SagaTotals> fetch_totals(const std::string& saga_url, const std::string& pipeline);
/// A saga as the instance that owns its partition answers it; when none says
/// it owns it (a rebalance in progress), the first instance that knows it.
Result<nlohmann::json> fetch_saga(const std::vector<std::string>& saga_urls, const std::string& saga_id,
                                  const std::string& api_key = {});
Result<nlohmann::json> fetch_saga(const std::string& saga_url, const std::string& saga_id,
                                  const std::string& api_key = {});

/// Polls until `sagas` sagas exist and every one is COMPLETED, or timeout.
Result<SagaTotals> wait_until_settled(const std::vector<std::string>& saga_urls, const std::string& pipeline,
                                      uint64_t sagas, std::chrono::milliseconds timeout);
Result<SagaTotals> wait_until_settled(const std::string& saga_url, const std::string& pipeline, uint64_t sagas,
                                      std::chrono::milliseconds timeout);

/// SELECT COUNT(*) and COUNT(DISTINCT event_id) of a loaded table.
struct RowCount {
  int64_t rows = 0;
  int64_t distinct_ids = 0;
};
Result<RowCount> count_rows(const std::string& db_path, const std::string& table);
/// The same in PostgreSQL (libpq connection string `dsn`).
Result<RowCount> count_rows_postgres(const std::string& dsn, const std::string& table);

/// The demo's verdict on a settled run: accepted = loaded + rejected + in
/// flight, the sagas loaded exactly the `valid` events and rejected the
/// `faulty` ones, and the table holds `valid` rows with distinct event ids.
struct Consistency {
  bool balanced = false;
  bool warehouse = false;
  bool rejects = false;
  bool ok() const { return balanced && warehouse && rejects; }
};
Consistency check_consistency(const SagaTotals& totals, const RowCount& rows, uint64_t valid, uint64_t faulty);

/// Every event_id of a loaded table, in no particular order: what a run
/// compares with the ids it expects (the weather demo, each API observation).
Result<std::vector<std::string>> loaded_event_ids(const std::string& db_path, const std::string& table);

}  // namespace starling::simulator
