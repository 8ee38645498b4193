// Test-only: runs a command and prints its peak resident set size (KiB) on stderr as
// "mm-peak-rss: <kib>", passing its stdout through. Used by `mm bench` to compare fresh processes.
//
//   mm-peak-rss <program> [args...]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

int main(int argc, char ** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: mm-peak-rss <program> [args...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        std::perror("fork");
        return 1;
    }
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        std::perror("execvp");
        _exit(127);
    }
    int           status = 0;
    struct rusage ru {};
    if (wait4(pid, &status, 0, &ru) < 0) {
        std::perror("wait4");
        return 1;
    }
    std::fprintf(stderr, "mm-peak-rss: %ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
