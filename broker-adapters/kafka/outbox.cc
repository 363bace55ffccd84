#include "broker-adapters/kafka/outbox.h"

namespace starling::kafka {

Result<std::size_t> relay_outbox(Outbox& outbox, Producer& producer) {
  std::size_t sent = 0;
  for (;;) {
    auto pending = outbox.outbox(1000);
    if (!pending) return std::unexpected(pending.error());
    if (pending->empty()) return sent;
    std::vector<OutMessage> msgs;
    msgs.reserve(pending->size());
    for (const auto& e : *pending) msgs.push_back(e.message);
    if (auto st = produce_all(producer, msgs, std::chrono::seconds(30)); !st) return std::unexpected(st.error());
    std::vector<uint64_t> ids;
    ids.reserve(pending->size());
    for (const auto& e : *pending) ids.push_back(e.id);
    if (auto st = outbox.outbox_done(ids); !st) return std::unexpected(st.error());
    sent += pending->size();
  }
}

}  // namespace starling::kafka
