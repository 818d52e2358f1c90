/* A closed-loop load client for line servers on a Unix socket.

       loadgen SOCKET CONNECTIONS SECONDS REQUEST_FILE

   One process, one thread, epoll: CONNECTIONS connections, each with exactly
   one request in flight (the bytes of REQUEST_FILE, one line ending in \n);
   a reply is complete at its \n, then the next request goes out. Prints one
   line of key=value pairs:

       requests=N seconds=S rate=R p50_us=.. p99_us=.. cpu=C errors=E

   cpu is this process's own CPU time (user + system) over the wall time of
   the run: near 1.0 the client is the bottleneck, well below it is not.
   errors counts replies that contain "error" (a bench stops trusting them).
   Built by bench/common.py with the system compiler (cc -O2). */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    long long sent_ns; /* when the request in flight went out */
    size_t have;       /* bytes of the current reply received so far */
    int partial_error; /* the reply so far contains "error" */
};

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static char *request;
static size_t request_len;
static long long *latencies; /* ns, one per reply */
static size_t count, capacity;

static void record(long long ns) {
    if (count == capacity) {
        capacity = capacity ? capacity * 2 : 1 << 16;
        latencies = realloc(latencies, capacity * sizeof *latencies);
        if (!latencies) die("realloc");
    }
    latencies[count++] = ns;
}

static void send_request(struct conn *c) {
    size_t off = 0;
    while (off < request_len) { /* a request is small: the socket takes it whole */
        ssize_t n = write(c->fd, request + off, request_len - off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            die("write");
        }
        off += (size_t)n;
    }
    c->sent_ns = now_ns();
    c->have = 0;
    c->partial_error = 0;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s SOCKET CONNECTIONS SECONDS REQUEST_FILE\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int nconn = atoi(argv[2]);
    double seconds = atof(argv[3]);
    if (nconn < 1 || seconds <= 0) {
        fprintf(stderr, "bad CONNECTIONS or SECONDS\n");
        return 2;
    }
    FILE *rf = fopen(argv[4], "rb");
    if (!rf) die(argv[4]);
    request = malloc(1 << 20);
    request_len = fread(request, 1, 1 << 20, rf);
    fclose(rf);
    if (request_len == 0 || request[request_len - 1] != '\n') {
        fprintf(stderr, "the request must be one line ending in \\n\n");
        return 2;
    }

    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct conn *conns = calloc((size_t)nconn, sizeof *conns);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    for (int i = 0; i < nconn; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0) die("socket");
        /* connect on a non-blocking Unix socket completes at once or EAGAIN
           (backlog full): retry until accepted */
        while (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            if (errno != EAGAIN && errno != EINTR) die("connect");
            usleep(1000);
        }
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    long long start = now_ns();
    long long stop = start + (long long)(seconds * 1e9);
    for (int i = 0; i < nconn; i++) send_request(&conns[i]);

    static char buf[1 << 16];
    struct epoll_event events[256];
    long long errors = 0;
    int open_conns = nconn;
    while (open_conns > 0) {
        int n = epoll_wait(ep, events, 256, 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            if (c->fd < 0) continue;
            ssize_t got = read(c->fd, buf, sizeof buf);
            if (got < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                die("read");
            }
            if (got == 0) {
                fprintf(stderr, "the server closed a connection\n");
                return 1;
            }
            /* one request in flight: a \n ends its reply, and nothing follows it */
            if (memmem(buf, (size_t)got, "\"error\"", 7)) c->partial_error = 1;
            c->have += (size_t)got;
            if (buf[got - 1] != '\n') continue;
            long long t = now_ns();
            record(t - c->sent_ns);
            errors += c->partial_error;
            if (t < stop) {
                send_request(c);
            } else {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                open_conns--;
            }
        }
    }
    long long end = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    double wall = (end - start) / 1e9;
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                 (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    if (count == 0) {
        fprintf(stderr, "no reply at all\n");
        return 1;
    }
    qsort(latencies, count, sizeof *latencies, cmp);
    size_t i99 = (size_t)(count * 0.99);
    if (i99 >= count) i99 = count - 1;
    printf("requests=%zu seconds=%.4f rate=%.1f p50_us=%.2f p99_us=%.2f cpu=%.3f errors=%lld\n",
           count, wall, count / wall, latencies[count / 2] / 1e3, latencies[i99] / 1e3,
           cpu / wall, errors);
    return 0;
}
