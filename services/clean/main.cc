// starling-clean: applies a pipeline's cleaning rules.
#include "services/clean/clean_service.h"
#include "services/common/service_main.h"

int main(int argc, char** argv) {
  using namespace starling;
  CLI::App app{"starling-clean: reads <p>.raw, applies the pipeline's rules, writes <p>.clean and <p>.rejected."};
  ServiceFlags flags;
  add_service_flags(app, flags, /*many_pipelines=*/false);
  CLI11_PARSE(app, argc, argv);
  return run_service("clean", flags, [](ServiceContext& ctx) {
    clean::CleanService service(ctx.pipelines.front(), {ctx.bootstrap, ctx.instance, {}}, ctx.instance);
    return service.run();
  });
}
