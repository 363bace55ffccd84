#pragma once
// API keys, for ingest's front door and the saga service's API and console.
// The keys file holds only SHA-256 hashes of the keys; a presented key is
// hashed and compared with every entry in constant time, so neither the file
// nor the timing gives a key away.
//
//   keys:
//     - name: fleet-lisbon            # in logs and metrics, never the key
//       sha256: 5e884898da28...       # printf %s "$KEY" | sha256sum
//       pipelines: [ecowheels]        # or ["*"]
//       devices: "bike-0*"            # optional glob on each record's device id
//       rate: {events_per_s: 500, burst: 1000}   # optional token bucket
//       scopes: [ingest]              # optional; ingest (the default), read, admin
//
// Scopes: `ingest` posts events to ingest; `read` reads the saga API and the
// console; `admin` also presses the console's controls (pause, resume and
// cancel a replay), and implies `read`.

#include <array>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include "services/common/error.h"
#include "services/common/http.h"

namespace starling {

struct Rate {
  double per_s = 0;  // 0: unlimited
  double burst = 0;
};

struct ApiKey {
  std::string name;
  std::array<unsigned char, 32> sha256{};
  std::vector<std::string> pipelines;  // "*" matches every pipeline
  std::string devices;                 // glob (fnmatch); empty: any device
  Rate rate;
  std::vector<std::string> scopes = {"ingest"};

  /// `admin` implies `read`.
  bool has_scope(const std::string& scope) const;
  bool allows_pipeline(const std::string& pipeline) const;
  bool allows_device(const std::string& device_id) const;
};

class KeyStore {
 public:
  /// Parses a keys file. Errors name file:line:column and the key's path.
  static Result<KeyStore> load(const std::string& path);
  static Result<KeyStore> parse(const std::string& yaml, const std::string& origin);

  /// The entry whose hash equals SHA-256(presented); every entry is compared
  /// in constant time, whatever matches.
  const ApiKey* find(const std::string& presented) const;
  const std::vector<ApiKey>& keys() const { return keys_; }

 private:
  std::vector<ApiKey> keys_;
};

/// The key a request presents: `Authorization: Bearer <key>` or `X-Api-Key`.
std::string presented_key(const std::string& authorization, const std::string& x_api_key);

/// Who is asking: the key the request presents, found in `keys`, or the 401
/// to answer (missing_api_key, invalid_api_key; with WWW-Authenticate).
std::expected<const ApiKey*, HttpResponse> authenticate(const KeyStore& keys, const HttpRequest& req);

std::array<unsigned char, 32> sha256(const std::string& data);
std::string hex(const unsigned char* data, std::size_t size);

}  // namespace starling
