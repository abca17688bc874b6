// tools/sgckpt/commands.hpp: the subcommands of the `sgckpt` command-line tool.
//
// Each subcommand lives in its own cmd_<name>.cpp and adds itself to the application with
// register_<name>(app): it creates its CLI11 subcommand, its options and a callback that
// does the work. The callback reports failure by throwing (sgckpt::Error or any
// std::exception); main() prints the one-line message and exits with status 1. Output goes
// through write_stdout() (cli_common.hpp) so that a failed write is an error too.
//
// To add a subcommand: declare register_<name> here, write cmd_<name>.cpp, and call it from
// main.cpp. (tools/CMakeLists.txt picks up every tools/sgckpt/*.cpp.)
#pragma once

#include <CLI/CLI.hpp>

namespace sgckpt::tool {

void register_inspect(CLI::App& app);  // sgckpt inspect FILE [--json] [--mmap] [--no-crc]
void register_convert(CLI::App& app);  // sgckpt convert IN OUT [--mmap]
void register_runs(CLI::App& app);     // sgckpt runs ROOT EXPERIMENT [--json]
void register_resolve(
    CLI::App& app);  // sgckpt resolve ROOT EXPERIMENT [--run-id ID] [--resume-path FILE] ...
void register_match(
    CLI::App& app);  // sgckpt match MODEL CKPT [--strict MODE] [--backbone P] [--ema] [--json]
void register_average(CLI::App& app);  // sgckpt average OUT CKPT... [--ema]
void register_diff(CLI::App& app);     // sgckpt diff A B [--select PATH] [--top N]
void register_remote(CLI::App& app);   // sgckpt push DIR URL | pull URL DIR | ls URL [--endpoint E]

}  // namespace sgckpt::tool
