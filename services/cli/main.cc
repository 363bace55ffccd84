// starling: the command line.
#include "services/cli/commands.h"

int main(int argc, char** argv) { return starling::cli::run(argc, argv); }
