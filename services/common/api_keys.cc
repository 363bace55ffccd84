#include "services/common/api_keys.h"

#include <fmt/format.h>
#include <fnmatch.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

namespace starling {

bool ApiKey::allows_pipeline(const std::string& pipeline) const {
  for (const auto& p : pipelines) {
    if (p == "*" || p == pipeline) return true;
  }
  return false;
}

bool ApiKey::has_scope(const std::string& scope) const {
  for (const auto& s : scopes) {
    if (s == scope || (s == "admin" && scope == "read")) return true;
  }
  return false;
}

bool ApiKey::allows_device(const std::string& device_id) const {
  return devices.empty() || ::fnmatch(devices.c_str(), device_id.c_str(), 0) == 0;
}

std::array<unsigned char, 32> sha256(const std::string& data) {
  std::array<unsigned char, 32> out{};
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
  return out;
}

std::string hex(const unsigned char* data, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
  return out;
}

std::string presented_key(const std::string& authorization, const std::string& x_api_key) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() > kBearer.size() && authorization.compare(0, kBearer.size(), kBearer) == 0) {
    return authorization.substr(kBearer.size());
  }
  return x_api_key;
}

std::expected<const ApiKey*, HttpResponse> authenticate(const KeyStore& keys, const HttpRequest& req) {
  const auto presented = presented_key(req.header("authorization"), req.header("x-api-key"));
  if (presented.empty()) {
    auto r = json_error(401, "missing_api_key", "send the key as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'",
                        "authorization");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return std::unexpected(std::move(r));
  }
  const ApiKey* key = keys.find(presented);
  if (key == nullptr) {
    auto r = json_error(401, "invalid_api_key", "the API key is not known", "authorization");
    r.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
    return std::unexpected(std::move(r));
  }
  return key;
}

const ApiKey* KeyStore::find(const std::string& presented) const {
  const auto h = sha256(presented);
  const ApiKey* found = nullptr;
  for (const auto& k : keys_) {
    // No early exit: the time depends on the number of keys only.
    const bool eq = CRYPTO_memcmp(h.data(), k.sha256.data(), h.size()) == 0;
    if (eq && found == nullptr) found = &k;
  }
  return found;
}

Result<KeyStore> KeyStore::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail(Errc::kInvalidArgument, fmt::format("{}: cannot read the keys file", path));
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), path);
}

Result<KeyStore> KeyStore::parse(const std::string& yaml, const std::string& origin) {
  auto at = [&origin](const YAML::Node& n, const std::string& path, const std::string& problem) {
    const auto m = n.Mark();
    return fail(Errc::kInvalidArgument,
                fmt::format("{}:{}:{}: {}: {}", origin, m.line + 1, m.column + 1, path, problem));
  };
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    return fail(Errc::kInvalidArgument, fmt::format("{}:{}:{}: {}", origin, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  if (!root.IsMap() || !root["keys"] || !root["keys"].IsSequence()) {
    return at(root, "keys", "expected `keys:` with a list of {name, sha256, pipelines}");
  }
  KeyStore store;
  const auto list = root["keys"];
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto n = list[i];
    const auto path = fmt::format("keys[{}]", i);
    if (!n.IsMap()) return at(n, path, "expected a mapping with name, sha256, pipelines");
    ApiKey k;
    for (const auto& kv : n) {
      const auto field = kv.first.as<std::string>();
      const auto& v = kv.second;
      auto fpath = path;
      fpath += '.';
      fpath += field;
      try {
        if (field == "name") {
          k.name = v.as<std::string>();
        } else if (field == "sha256") {
          const auto h = v.as<std::string>();
          if (h.size() != 64 || h.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
            return at(v, fpath, "expected 64 hex digits (printf %s \"$KEY\" | sha256sum)");
          }
          for (std::size_t b = 0; b < 32; ++b)
            k.sha256[b] = static_cast<unsigned char>(std::stoi(h.substr(b * 2, 2), nullptr, 16));
        } else if (field == "pipelines") {
          if (!v.IsSequence() || v.size() == 0)
            return at(v, fpath, "expected a non-empty list of pipeline names or \"*\"");
          for (const auto& p : v) k.pipelines.push_back(p.as<std::string>());
        } else if (field == "devices") {
          k.devices = v.as<std::string>();
        } else if (field == "rate") {
          if (!v.IsMap() || !v["events_per_s"]) return at(v, fpath, "expected {events_per_s: N, burst: M}");
          k.rate.per_s = v["events_per_s"].as<double>();
          k.rate.burst = v["burst"] ? v["burst"].as<double>() : k.rate.per_s;
          if (!(k.rate.per_s > 0) || !(k.rate.burst >= 1)) {
            return at(v, fpath, "expected events_per_s > 0 and burst >= 1");
          }
        } else if (field == "scopes") {
          if (!v.IsSequence() || v.size() == 0) return at(v, fpath, "expected a non-empty list of ingest, read, admin");
          k.scopes.clear();
          for (const auto& s : v) {
            const auto scope = s.as<std::string>();
            if (scope != "ingest" && scope != "read" && scope != "admin") {
              return at(s, fpath, "'" + scope + "' is not a scope; expected ingest, read or admin");
            }
            k.scopes.push_back(scope);
          }
        } else {
          return at(kv.first, fpath, "unknown key; expected name, sha256, pipelines, devices, rate or scopes");
        }
      } catch (const YAML::Exception&) {
        return at(v, fpath, "wrong type");
      }
    }
    if (k.name.empty()) return at(n, path + ".name", "missing");
    if (k.pipelines.empty()) return at(n, path + ".pipelines", "missing");
    bool zero = true;
    for (auto b : k.sha256) zero = zero && b == 0;
    if (zero) return at(n, path + ".sha256", "missing");
    store.keys_.push_back(std::move(k));
  }
  return store;
}

}  // namespace starling
