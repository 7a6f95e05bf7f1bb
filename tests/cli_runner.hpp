// Runs the headinfer binary as a user would and captures exit code, stdout, stderr.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>

namespace headinfer::test {

struct CliRun {
  int code;
  std::string out, err;
};

inline CliRun cli(const std::string& args) {
  // ctest runs tests of one binary in parallel processes: stderr goes to a file of
  // this process and call.
  static int calls = 0;
  const std::string err_path =
      ::testing::TempDir() + "/cli_stderr_" + std::to_string(getpid()) + "_" + std::to_string(++calls) + ".txt";
  const std::string cmd = std::string(HEADINFER_CLI_PATH) + " " + args + " 2>" + err_path;
  CliRun r{};
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  std::ifstream e(err_path);
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  std::remove(err_path.c_str());
  return r;
}

// Runs the binary, sends it SIGINT (Ctrl-C) after `delay_ms`, and waits for it.
// code is the exit status, or 128 + the signal when a signal ended it.
inline CliRun cli_interrupted(const std::string& args, int delay_ms) {
  static int calls = 0;
  const std::string base = ::testing::TempDir() + "/cli_int_" + std::to_string(getpid()) + "_" + std::to_string(++calls);
  const std::string cmd = "exec " + std::string(HEADINFER_CLI_PATH) + " " + args + " >" + base + ".out 2>" + base + ".err";
  CliRun r{};
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  usleep(static_cast<useconds_t>(delay_ms) * 1000);
  kill(pid, SIGINT);
  int st = 0;
  waitpid(pid, &st, 0);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  for (auto [path, dst] : {std::pair{base + ".out", &r.out}, std::pair{base + ".err", &r.err}}) {
    std::ifstream f(path);
    dst->assign(std::istreambuf_iterator<char>(f), {});
    std::remove(path.c_str());
  }
  return r;
}

inline int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace headinfer::test
