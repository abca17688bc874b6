// Uses the remote stores through sgckpt::remote, as a user's program would: a file goes into a
// directory store and comes back (the S3 store is linked, through libcurl, but not contacted).
#include <cstdio>
#include <fstream>
#include <string>

#include <sgckpt/remote.hpp>

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "remote_app_store";
  std::ofstream(dir + ".src") << "checkpoint bytes";
  auto store = sgckpt::remote::open_store(dir);
  store->put(sgckpt::remote::SourceFile::open(dir + ".src"), "exp/RUN_1/ckpt_latest.pth");
  store->get("exp/RUN_1/ckpt_latest.pth", dir + ".back");
  std::ifstream in(dir + ".back");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::printf("%s: %zu object(s), round trip %s\n", store->url().c_str(), store->list("").size(),
              text == "checkpoint bytes" ? "ok" : "WRONG");
  return text == "checkpoint bytes" ? 0 : 1;
}
