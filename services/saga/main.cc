// starling-saga: the saga coordinator.
#include <filesystem>

#include "services/common/service_main.h"
#include "services/common/shutdown.h"
#include "services/saga/saga_service.h"

int main(int argc, char** argv) {
  using namespace starling;
  CLI::App app{"starling-saga: folds progress facts from starling.saga into per-saga state in RocksDB and serves it."};
  ServiceFlags flags;
  flags.listen = "127.0.0.1:8081";
  add_service_flags(app, flags, /*many_pipelines=*/true);
  CLI11_PARSE(app, argc, argv);
  return run_service("saga", flags, [](ServiceContext& ctx) {
    saga::RocksSagaStore store((std::filesystem::path(ctx.flags.data_dir) / "sagas").string());
    HttpServer server(ctx.http_options(2), [&store](HttpRequest r, HttpResponder done) {
      done(saga::handle_saga_api(store, r));
    });
    ctx.start_http(server);
    saga::SagaService service(store, {ctx.bootstrap, ctx.instance, {}}, ctx.instance);
    const int rc = service.run();
    server.stop();
    return rc;
  });
}
