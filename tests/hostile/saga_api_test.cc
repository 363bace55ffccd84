// The saga API (handle_saga_api over a real RocksSagaStore) under query values
// and saga ids that are not UTF-8: a 400 or 404 naming the parameter, in valid
// JSON, never an exception.

#include "services/saga/saga_api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "services/common/text.h"
#include "tests/support/temp_dir.h"

namespace starling::saga {
namespace {

using ::testing::HasSubstr;

class HostileSagaApi : public ::testing::Test {
 protected:
  HostileSagaApi() : store_(dir_ / "db") {}

  HttpResponse get(const std::string& path, std::map<std::string, std::string> query = {}) {
    HttpRequest req;
    req.method = "GET";
    req.path = path;
    req.query = std::move(query);
    HttpResponse resp;
    EXPECT_NO_THROW(resp = handle_saga_api(store_, req, [] { return int64_t{1'795'428'000'000}; }));
    EXPECT_TRUE(is_utf8(resp.body)) << resp.body;
    return resp;
  }

  testing::TempDir dir_;
  RocksSagaStore store_;
};

TEST_F(HostileSagaApi, AQueryValueThatIsNotUtf8Is400NamingTheParameter) {
  for (const char* param : {"state", "since", "limit", "page_token"}) {
    const auto r = get("/v1/sagas", {{param, "\xff\xfe"}});
    EXPECT_EQ(r.status, 400) << param;
    EXPECT_EQ(nlohmann::json::parse(r.body)["error"]["field"], param);
  }
  const auto r = get("/v1/pipelines/p/consistency", {{"window", "\xff"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(nlohmann::json::parse(r.body)["error"]["field"], "window");
}

TEST_F(HostileSagaApi, ASagaIdOrARouteThatIsNotUtf8Is404InValidJson) {
  auto r = get("/v1/sagas/\xff\xfe");
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(r.body, HasSubstr("\xEF\xBF\xBD"));
  r = get("/v1/\xff");
  EXPECT_EQ(r.status, 404);
}

}  // namespace
}  // namespace starling::saga
