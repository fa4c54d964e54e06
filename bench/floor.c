/* The cost floor for a host-scope sampler: what reading /proc/stat and /proc/meminfo once a
 * second costs with nothing else around it (no parsing, no runtime, no output). compare.py
 * and instructions.py run it beside the agents; exits 0 on SIGTERM. */
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

static void slurp(const char *path) {
    char buf[65536]; /* /proc/stat of a 64-CPU machine is ~10 KB */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    while (read(fd, buf, sizeof buf) > 0)
        ;
    close(fd);
}

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

int main(void) {
    signal(SIGTERM, on_term);
    for (;;) {
        slurp("/proc/stat");
        slurp("/proc/meminfo");
        sleep(1);
    }
}
