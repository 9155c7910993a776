// A delay line between two TAP devices: what the kernel sends out of HOST_TAP is handed to
// BRIDGE_TAP DELAY_US microseconds later (the host's egress is delayed, as `tc netem delay` on
// its interface would do); the other direction passes at once. For kernels without sch_netem:
// Launch/netns-hosts.sh puts one between each test host and the bridge when A2Q_NETNS_DELAY is
// set. Both devices carry virtio-net headers with TSO/checksum offload, so the kernel hands
// over up to 64 KiB per read and the line costs a few thousand system calls per second at
// 1 Gbit/s. Frames that do not fit the buffer are dropped, as a full queue would.
//
//   delay-line HOST_TAP BRIDGE_TAP DELAY_US      (prints "ready" once both devices exist)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

enum { FRAME_MAX = 65536 + 64, RING_BYTES = 32 << 20 };

/// Frames in flight, in arrival order, each as {due time, length, bytes} in a byte ring.
typedef struct {
    unsigned char *bytes;
    size_t head, tail, used;  // head: oldest frame; tail: where the next one goes
} Ring;

typedef struct { int64_t due_ns; uint32_t length; } Header;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int open_tap(const char *name) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
    if (fd < 0) { perror("delay-line: /dev/net/tun"); exit(1); }
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &request) < 0) { fprintf(stderr, "delay-line: TUNSETIFF %s: %s\n", name, strerror(errno)); exit(1); }
    unsigned offload = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    if (ioctl(fd, TUNSETOFFLOAD, offload) < 0) { fprintf(stderr, "delay-line: TUNSETOFFLOAD %s: %s\n", name, strerror(errno)); exit(1); }
    return fd;
}

/// Contiguous space for `need` bytes at the tail (wrapping to 0 when the end is too short).
static unsigned char *reserve(Ring *ring, size_t need) {
    if (ring->used == 0) ring->head = ring->tail = 0;
    if (ring->tail >= ring->head) {
        if (RING_BYTES - ring->tail >= need) return ring->bytes + ring->tail;
        if (ring->head > need) {  // wrap: mark the unused end with a zero-length header
            if (RING_BYTES - ring->tail >= sizeof(Header)) ((Header *)(ring->bytes + ring->tail))->length = UINT32_MAX;
            ring->used += RING_BYTES - ring->tail;
            ring->tail = 0;
            return ring->bytes;
        }
        return NULL;
    }
    return ring->head - ring->tail > need ? ring->bytes + ring->tail : NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: delay-line HOST_TAP BRIDGE_TAP DELAY_US\n"); return 2; }
    // A clean signal state whatever the parent left (a blocked SIGTERM would keep us alive).
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    int host = open_tap(argv[1]), bridge = open_tap(argv[2]);
    int64_t delay_ns = (int64_t)(atof(argv[3]) * 1000);
    Ring ring = {malloc(RING_BYTES), 0, 0, 0};
    unsigned char *scratch = malloc(FRAME_MAX);
    if (!ring.bytes || !scratch) { fprintf(stderr, "delay-line: out of memory\n"); return 1; }
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);  // wake within ~1 µs of a frame's due time
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        // Send what is due.
        int64_t now = now_ns();
        while (ring.used > 0) {
            Header *h = (Header *)(ring.bytes + ring.head);
            if (RING_BYTES - ring.head < sizeof(Header) || h->length == UINT32_MAX) {  // wrapped end
                ring.used -= RING_BYTES - ring.head;
                ring.head = 0;
                continue;
            }
            if (h->due_ns > now) break;
            if (write(bridge, h + 1, h->length) < 0 && errno != EAGAIN && errno != EIO) { perror("delay-line: write"); return 1; }
            size_t step = (sizeof(Header) + h->length + 15) & ~(size_t)15;
            ring.head += step;
            ring.used -= step;
        }
        struct timespec timeout = {0, 0}, *wait_for = NULL;  // NULL: until a frame arrives
        if (ring.used > 0) {
            Header *h = (Header *)(ring.bytes + ring.head);
            int64_t wait = h->due_ns - now_ns();
            if (wait < 0) wait = 0;
            timeout.tv_sec = wait / 1000000000LL;
            timeout.tv_nsec = wait % 1000000000LL;
            wait_for = &timeout;
        }
        struct pollfd fds[2] = {{host, POLLIN, 0}, {bridge, POLLIN, 0}};
        if (ppoll(fds, 2, wait_for, NULL) < 0 && errno != EINTR) {
            perror("delay-line: ppoll");
            return 1;
        }
        // A device gone (its namespace deleted): the link no longer exists, and neither do we.
        if ((fds[0].revents | fds[1].revents) & (POLLERR | POLLHUP | POLLNVAL)) return 0;
        // The host's frames join the queue; the bridge's pass at once.
        for (;;) {
            unsigned char *slot = reserve(&ring, sizeof(Header) + FRAME_MAX);
            unsigned char *target = slot ? slot + sizeof(Header) : scratch;
            ssize_t n = read(host, target, FRAME_MAX);
            if (n < 0 && errno != EAGAIN && errno != EINTR) return 0;  // the device is gone
            if (n <= 0) break;
            if (!slot) continue;  // no room: dropped
            Header *h = (Header *)slot;
            h->due_ns = now_ns() + delay_ns;
            h->length = (uint32_t)n;
            size_t step = (sizeof(Header) + (size_t)n + 15) & ~(size_t)15;
            ring.tail += step;
            ring.used += step;
        }
        for (;;) {
            ssize_t n = read(bridge, scratch, FRAME_MAX);
            if (n < 0 && errno != EAGAIN && errno != EINTR) return 0;
            if (n <= 0) break;
            if (write(host, scratch, (size_t)n) < 0 && errno != EAGAIN && errno != EIO) { perror("delay-line: write"); return 1; }
        }
    }
}
