// tools/sgckpt/main.cpp: the `sgckpt` command-line tool.
//
//   sgckpt <subcommand> [options]     (see commands.hpp; `sgckpt --help`)
//
// Exit status: 0 success; 1 the work failed (a file that cannot be read or written, a
// malformed checkpoint, ...), reported as ONE line "sgckpt: error: <message>" on stderr;
// 2 a usage error (unknown option, missing argument, no subcommand).
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/version.hpp"

namespace {

// The message on one line: line breaks and other control characters become spaces.
// One line on stderr: "sgckpt: error: what", or "sgckpt: error [kind]: what" for the
// library's errors (docs/errors.md).
void report_error(std::string_view what, const char* kind = nullptr) {
  std::string line = kind != nullptr ? std::string("sgckpt: error [") + kind + "]: " : "sgckpt: error: ";
  for (char c : what) line += (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) ? ' ' : c;
  line += '\n';
  std::fflush(stdout);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    CLI::App app{"Read, inspect and write PyTorch .pth checkpoints.", "sgckpt"};
    app.set_version_flag("--version", "sgckpt " SGCKPT_VERSION_STRING);
    app.require_subcommand(1);
    app.failure_message([](const CLI::App*, const CLI::Error& e) {
      return "sgckpt: error: " + std::string(e.what()) + "\nRun with --help for more information.\n";
    });
    sgckpt::tool::register_inspect(app);
    sgckpt::tool::register_convert(app);
    sgckpt::tool::register_runs(app);
    sgckpt::tool::register_resolve(app);
    sgckpt::tool::register_match(app);
    sgckpt::tool::register_average(app);
    sgckpt::tool::register_diff(app);
    sgckpt::tool::register_remote(app);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      const int code = app.exit(e);  // prints the help, or the usage error
      return code == 0 ? 0 : 2;
    }
  } catch (const sgckpt::Error& e) {
    report_error(e.what(), sgckpt::kind_name(e.kind()));
    return 1;
  } catch (const std::exception& e) {
    report_error(e.what());
    return 1;
  } catch (...) {
    report_error("unknown failure");
    return 1;
  }
  return 0;
}
