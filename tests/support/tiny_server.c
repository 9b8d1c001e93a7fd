/* A minimal TCP server for the malloc-heap tests: listens on 127.0.0.1:<port>, accepts
 * connections and closes them, and allocates a little per connection. Built two ways by the
 * tests: statically linked (`-static`: the preloaded library can never load), and with
 * OWN_MALLOC, which links an allocator of its own under the names malloc/free/calloc/realloc (as a
 * server statically linking jemalloc does), so the preloaded library never sees it allocate; and
 * with PREFIXED_ALLOCATOR, which allocates through `je_malloc` (jemalloc built with a prefix, as
 * Rust's jemallocator links it): malloc stays the system's, but the server's memory bypasses it.
 * With PVALLOC_TOO it also takes and frees a pvalloc block per connection: jemalloc has no pvalloc,
 * so under the shared jemalloc the preloaded library must give that block to jemalloc, whose
 * free gets it back. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef PVALLOC_TOO
#include <malloc.h>
#endif

#ifdef OWN_MALLOC
/* A bump allocator over one mapping: never frees, enough for this server's life. */
static char *arena;
static size_t used;
#define ARENA (64u << 20)
void *malloc(size_t n) {
    if (!arena) {
        arena = mmap(0, ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    n = (n + 15) & ~(size_t)15;
    if (arena == MAP_FAILED || used + n + 16 > ARENA) return 0;
    char *p = arena + used + 16;
    *(size_t *)(p - 16) = n;
    used += n + 16;
    return p;
}
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b) {
    void *p = malloc(a * b);
    if (p) memset(p, 0, a * b);
    return p;
}
void *realloc(void *p, size_t n) {
    void *q = malloc(n);
    if (p && q) {
        size_t old = *(size_t *)((char *)p - 16);
        memcpy(q, p, old < n ? old : n);
    }
    return q;
}
#endif

#ifdef PREFIXED_ALLOCATOR
static char pool[1 << 20];
static size_t taken;
void *je_malloc(size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (taken + n > sizeof pool) return 0;
    taken += n;
    return pool + taken - n;
}
#define ALLOCATE je_malloc
#else
#define ALLOCATE malloc
#endif

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 64) != 0) return 1;
    for (;;) {
        int c = accept(fd, 0, 0);
        if (c < 0) continue;
        char *note = ALLOCATE(64);
        if (note) strcpy(note, "seen");
#ifdef PVALLOC_TOO
        free(pvalloc(100));
#endif
        close(c);
    }
}
