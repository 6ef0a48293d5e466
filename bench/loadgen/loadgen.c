/*
 * loadgen: a single-threaded epoll WebSocket client for benchmarking Roomcast.
 *
 * Why C: the benchmark shares two cores between the server and its load, and a
 * Python client tops out far below the server. This client costs a few
 * microseconds per delivery, so the server stays the bottleneck.
 *
 * It opens N subscriber connections (HTTP upgrade, masked client frames,
 * Centrifugo JSON protocol), sends connect (with a JWT) and subscribe in one
 * frame as the JS SDK does, answers server pings, and optionally drives one
 * publisher connection that publishes through the client protocol. The
 * publisher stamps each publication with CLOCK_MONOTONIC nanoseconds and a
 * sequence number ({"t":<ns>,"s":<seq>,"p":"xx.."}); subscribers parse those
 * two numbers to measure publish-to-receive latency per delivery and the time
 * until the last subscriber got each publication.
 *
 * --proto picks the subscribers' wire format, so one client drives several servers:
 *   centrifuge  the Centrifugo JSON protocol above (default)
 *   socketio    Socket.IO v4 over Engine.IO v4 WebSocket frames: wait for the open packet
 *               ("0{...}"), connect to "/" with {"token":JWT} ("40{...}"), then emit
 *               "subscribe" with an ack ("420[\"subscribe\",CH]"); publications arrive
 *               as "42[\"pub\",DATA]"; Engine.IO pings ("2") are answered ("3")
 *   ws          plain WebSocket: the first text frame {"token":JWT,"channel":CH} is
 *               answered {"ok":true}; publications arrive as the bare DATA
 *   protobuf    the Centrifugo protocol's Protobuf encoding (subprotocol
 *               centrifuge-protobuf): binary frames of varint-length-prefixed Command
 *               and Reply messages; the publisher publishes the same JSON DATA as bytes
 * With --api-key the publisher is not a WebSocket client but a keep-alive HTTP/1.1
 * connection to the server API (--api-path, default /api): POST <path>/publish
 * {"channel":CH,"data":DATA}, or with --batch > 1 one POST <path>/batch
 * {"commands":[{"publish":{...}},...]}, the shape Centrifugo's API has.
 * The report counts the WebSocket frames that carried publications, so a server
 * that joins publications into fewer frames is visible.
 * With --rooms K subscriber i joins room <channel>-<i mod K>, and the publications are
 * sent by the subscribers themselves, each into its own room, in turn (no publisher
 * connection): a publish command (centrifuge), a "publish" event with an ack
 * (socketio), or a {"data":DATA} frame (ws, which has no acks). Every member of the
 * room receives it, the sender too.
 *
 * With --reconnect-port P the run can end in a reconnect storm: after "storm" on stdin,
 * every subscriber the server closes (a close frame, EOF or a reset) connects again at
 * once, to port P, and sends connect and subscribe again; a failed attempt is retried
 * 100 ms later. The caller stops the first server after sending "storm".
 *
 * Output: JSON lines on stdout. With --wait the run has phases driven by the
 * caller (the benchmark runner reads server CPU between them):
 *   {"event":"ready",...}   all connections set up; then waits for "go" or "storm" on stdin
 *   {"event":"done",...}    publishing finished; then waits for "quit" or EOF
 *   {"event":"reconnected",...}  after "storm": every subscriber is ready again on port P
 *                           (or the timeout passed); "storm" in it has the figures
 * Without --wait it sets up, publishes and prints only the "done" report.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ utils */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n);
    if (!p) die("out of memory");
    return p;
}

/* Parse an unsigned decimal at p; advances *end past the digits. */
static uint64_t parse_u64(const char *p, const char *limit, const char **end) {
    uint64_t v = 0;
    while (p < limit && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
    *end = p;
    return v;
}

/* -------------------------------------------------------------- histogram */

/*
 * Log-linear histogram of microseconds: exact below 2048 us, then 1024 buckets
 * per power of two (under 0.1% error). Cheap enough to record every delivery.
 */
#define H_SUB 1024
#define H_BUCKETS (2 * H_SUB + 44 * H_SUB)

typedef struct {
    uint64_t *counts;
    uint64_t n, max_us, sum_us;
} hist_t;

static void hist_init(hist_t *h) {
    h->counts = calloc(H_BUCKETS, sizeof(uint64_t));
    if (!h->counts) die("out of memory");
    h->n = h->max_us = h->sum_us = 0;
}

static int hist_bucket(uint64_t us) {
    if (us < 2 * H_SUB) return (int)us;
    int e = 63 - __builtin_clzll(us) - 10;
    return 2 * H_SUB + (e - 1) * H_SUB + (int)((us >> e) - H_SUB);
}

static uint64_t hist_value(int idx) {
    if (idx < 2 * H_SUB) return (uint64_t)idx;
    int e = (idx - 2 * H_SUB) / H_SUB + 1;
    uint64_t m = (uint64_t)((idx - 2 * H_SUB) % H_SUB + H_SUB);
    return m << e;
}

static void hist_add_ns(hist_t *h, uint64_t ns) {
    uint64_t us = ns / 1000;
    if (us > (1ull << 40)) us = 1ull << 40;
    h->counts[hist_bucket(us)]++;
    h->n++;
    h->sum_us += us;
    if (us > h->max_us) h->max_us = us;
}

static double hist_pct_ms(const hist_t *h, double pct) {
    if (h->n == 0) return 0.0;
    uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->n);
    if (rank >= h->n) rank = h->n - 1;
    uint64_t seen = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen > rank) return (double)hist_value(i) / 1000.0;
    }
    return (double)h->max_us / 1000.0;
}

static void hist_json(FILE *f, const char *name, const hist_t *h) {
    fprintf(f,
            "\"%s\":{\"n\":%llu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
            "\"max\":%.3f,\"mean\":%.3f}",
            name, (unsigned long long)h->n, hist_pct_ms(h, 50), hist_pct_ms(h, 90),
            hist_pct_ms(h, 99), (double)h->max_us / 1000.0,
            h->n ? (double)h->sum_us / (double)h->n / 1000.0 : 0.0);
}

/* ----------------------------------------------------------------- config */

enum proto { P_CENTRIFUGE, P_SOCKETIO, P_WS, P_PROTOBUF };

typedef struct {
    const char *host, *path, *channel, *tokens_file, *pub_token, *api_key, *api_path;
    enum proto proto;
    int port, conns, concurrency, batch, size, wait, rooms, reconnect_port;
    long pubs, warmup;
    double rate, gap_ms, timeout_s;
} config_t;

static config_t cfg = {
    .host = "127.0.0.1",
    .path = "/connection/websocket",
    .channel = "",
    .tokens_file = NULL,
    .pub_token = NULL,
    .api_key = NULL,
    .api_path = "/api",
    .proto = P_CENTRIFUGE,
    .rooms = 0,
    .reconnect_port = 0,
    .port = 0,
    .conns = 1,
    .concurrency = 64,
    .batch = 1,
    .size = 100,
    .wait = 0,
    .pubs = 0,
    .warmup = 0,
    .rate = 0,
    .gap_ms = 0,
    .timeout_s = 60,
};

static char **tokens;
static int n_tokens;

static void load_tokens(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int cap_tokens = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (n_tokens == cap_tokens) {
            cap_tokens = cap_tokens ? cap_tokens * 2 : 1024;
            tokens = xrealloc(tokens, (size_t)cap_tokens * sizeof(char *));
        }
        tokens[n_tokens++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (n_tokens == 0) die("no tokens in %s", path);
}

/* ------------------------------------------------------------ connections */

enum state { S_IDLE, S_CONNECTING, S_UPGRADE, S_HELLO, S_READY, S_CLOSED };

typedef struct {
    int fd;
    int index;
    enum state state;
    int is_publisher;
    int replies_needed; /* connect (+ subscribe) replies before ready */
    uint64_t t_start, t_upgraded;
    uint64_t lost_ns;  /* in a storm: when the server closed it (0: not lost) */
    uint64_t retry_ns; /* in a storm: when to try a failed reconnect again (0: none) */
    char *rbuf; /* bytes of an incomplete frame or HTTP response */
    size_t rlen, rcap;
    char *wbuf; /* bytes the kernel did not take yet */
    size_t wlen, wcap;
} conn_t;

static conn_t *conns;
static int n_conns; /* subscribers + optional publisher */
static int epfd, timer_fd = -1;
static struct sockaddr_in server_addr;
/* --more-ports: subscribers go round-robin over --port and these (nodes of one cluster);
 * the publisher stays on --port. */
static uint16_t ports[16];
static int n_ports = 1;
static char handshake_req[512];
static size_t handshake_len;
static uint32_t mask_state = 0x9e3779b9u;

/* counters */
static int opened, in_setup, ready_subs, publisher_ready, failed;
static uint64_t pub_frames; /* WebSocket frames that carried at least one publication */
/* HTTP publisher: publications in each request still waiting for its response (FIFO) */
static int *http_inflight;
static long http_head, http_tail;
static uint64_t deliveries, pings, other_pushes, replies_ok, pub_acks, pub_errors;
static uint64_t err_connect, err_upgrade, err_eof, err_reply, err_protocol, closed_by_server;
static int close_codes[64][2]; /* code, count */
static int n_close_codes;
static hist_t h_latency, h_last, h_upgrade, h_ready;
static uint64_t setup_start, setup_end;

/* reconnect storm (--reconnect-port, after "storm") */
static int storm, storm_reported, stopping;
static uint64_t storm_start, storm_last_ready, reconnected, reconnect_failures, retries_pending;
static uint64_t storm_target; /* the subscribers ready when the storm began */
static hist_t h_reconnect;

/* publication bookkeeping, indexed by sequence number */
static uint64_t *pub_sent_ns, *pub_last_ns;
static uint32_t *pub_count;
static long pubs_sent;
static uint64_t publish_start, publish_end, last_send_ns;
static int publishing, publish_done, gap_pending;
static long next_cmd_id = 1;

static void record_close_code(int code) {
    for (int i = 0; i < n_close_codes; i++)
        if (close_codes[i][0] == code) {
            close_codes[i][1]++;
            return;
        }
    if (n_close_codes < 64) {
        close_codes[n_close_codes][0] = code;
        close_codes[n_close_codes][1] = 1;
        n_close_codes++;
    }
}

static void buf_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n) {
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *len + n) c *= 2;
        *buf = xrealloc(*buf, c);
        *cap = c;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
}

static void conn_close(conn_t *c) {
    if (c->state == S_CLOSED || c->fd < 0) return;
    int was_setup = c->state != S_READY;
    if (was_setup) {
        in_setup--;
        failed++;
    } else if (c->is_publisher) {
        publisher_ready = 0;
    } else {
        ready_subs--;
    }
    struct linger lg = {1, 0}; /* reset: no TIME_WAIT piles up across scenarios */
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = S_CLOSED;
    free(c->rbuf);
    free(c->wbuf);
    c->rbuf = c->wbuf = NULL;
    c->rlen = c->rcap = c->wlen = c->wcap = 0;
    if (storm && !stopping && !c->is_publisher) { /* reconnect: at once, or a retry later */
        uint64_t t = now_ns();
        if (was_setup && c->lost_ns) {
            reconnect_failures++;
            c->retry_ns = t + 100000000ull;
            retries_pending++;
        } else {
            c->lost_ns = t;
            c->retry_ns = t;
            retries_pending++;
        }
    }
}

static void set_events(conn_t *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_write(conn_t *c, const char *data, size_t n) {
    if (c->state == S_CLOSED) return;
    if (c->wlen == 0) {
        ssize_t w = write(c->fd, data, n);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                err_eof++;
                conn_close(c);
                return;
            }
            w = 0;
        }
        if ((size_t)w == n) return;
        data += w;
        n -= (size_t)w;
        set_events(c, EPOLLIN | EPOLLOUT);
    }
    buf_append(&c->wbuf, &c->wlen, &c->wcap, data, n);
}

static void conn_flush(conn_t *c) {
    while (c->wlen > 0) {
        ssize_t w = write(c->fd, c->wbuf, c->wlen);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            err_eof++;
            conn_close(c);
            return;
        }
        memmove(c->wbuf, c->wbuf + w, c->wlen - (size_t)w);
        c->wlen -= (size_t)w;
    }
    set_events(c, EPOLLIN);
}

/* Send one masked client frame (RFC 6455 requires clients to mask). */
static void send_frame(conn_t *c, int opcode, const char *payload, size_t n) {
    static char *frame;
    static size_t frame_cap;
    size_t need = n + 14;
    if (need > frame_cap) {
        frame_cap = need * 2;
        frame = xrealloc(frame, frame_cap);
    }
    size_t h = 0;
    frame[h++] = (char)(0x80 | opcode);
    if (n < 126) {
        frame[h++] = (char)(0x80 | n);
    } else if (n < 65536) {
        frame[h++] = (char)(0x80 | 126);
        frame[h++] = (char)(n >> 8);
        frame[h++] = (char)(n & 0xff);
    } else {
        frame[h++] = (char)(0x80 | 127);
        for (int i = 7; i >= 0; i--) frame[h++] = (char)((uint64_t)n >> (8 * i));
    }
    mask_state ^= mask_state << 13;
    mask_state ^= mask_state >> 17;
    mask_state ^= mask_state << 5;
    unsigned char key[4];
    memcpy(key, &mask_state, 4);
    memcpy(frame + h, key, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) frame[h + i] = (char)(payload[i] ^ key[i & 3]);
    conn_write(c, frame, h + n);
}

static void send_text(conn_t *c, const char *s, size_t n) { send_frame(c, 0x1, s, n); }

/* ------------------------------------------------------- protobuf encoding */

static size_t pb_varint(char *buf, uint64_t v) {
    size_t n = 0;
    while (v > 0x7f) {
        buf[n++] = (char)((v & 0x7f) | 0x80);
        v >>= 7;
    }
    buf[n++] = (char)v;
    return n;
}

/* A length-delimited field: key, length, bytes. */
static size_t pb_bytes(char *buf, int field, const char *s, size_t len) {
    size_t n = pb_varint(buf, (uint64_t)field << 3 | 2);
    n += pb_varint(buf + n, len);
    memcpy(buf + n, s, len);
    return n + len;
}

/* One Command{id, <method field>: body}, prefixed with its length. */
static size_t pb_command(char *buf, uint64_t id, int method, const char *body, size_t len) {
    char inner[8192];
    size_t n = 0;
    inner[n++] = 0x08; /* id: field 1, varint */
    n += pb_varint(inner + n, id);
    if (n + len + 16 > sizeof inner) die("protobuf command too large");
    n += pb_bytes(inner + n, method, body, len);
    size_t h = pb_varint(buf, n);
    memcpy(buf + h, inner, n);
    return h + n;
}

static int pb_read_varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        unsigned char b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/* The length-delimited field `field` of the message [p, end): 1 and its span if found. */
static int pb_find(const unsigned char *p, const unsigned char *end, int field,
                   const unsigned char **out, size_t *len) {
    while (p < end) {
        uint64_t key, v;
        if (!pb_read_varint(&p, end, &key)) return 0;
        switch (key & 7) {
        case 0:
            if (!pb_read_varint(&p, end, &v)) return 0;
            break;
        case 2:
            if (!pb_read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return 0;
            if ((int)(key >> 3) == field) {
                *out = p;
                *len = (size_t)v;
                return 1;
            }
            p += v;
            break;
        default: return 0;
        }
    }
    return 0;
}

static void start_connection(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s (raise the fd limit?)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->t_start = now_ns();
    c->state = S_CONNECTING;
    opened++;
    in_setup++;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    struct sockaddr_in addr = server_addr;
    if (!c->is_publisher)
        addr.sin_port = htons(c->lost_ns ? (uint16_t)cfg.reconnect_port : ports[c->index % n_ports]);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 &&
        errno != EINPROGRESS) {
        err_connect++;
        conn_close(c);
    }
}

static void became_ready(conn_t *c);

/* The channel a subscriber joins: --channel, or its room of --rooms. */
static const char *conn_channel(const conn_t *c) {
    static char name[300];
    if (!cfg.rooms) return cfg.channel;
    snprintf(name, sizeof name, "%s-%d", cfg.channel, c->index % cfg.rooms);
    return name;
}

/* Members per room: everyone in one room, or --conns / --rooms. */
static uint64_t room_size(void);

static const char *conn_token(conn_t *c) {
    return c->is_publisher ? cfg.pub_token : n_tokens ? tokens[c->index % n_tokens] : "";
}

/* Socket.IO: the next step after the open packet, and after the namespace connect. */
static void sio_after_connect(conn_t *c) {
    if (!cfg.channel[0]) {
        became_ready(c);
        return;
    }
    char msg[512];
    int n = snprintf(msg, sizeof msg, "420[\"subscribe\",\"%s\"]", conn_channel(c));
    send_text(c, msg, (size_t)n);
}

static void send_hello_protobuf(conn_t *c) {
    char body[4096], msg[8192];
    const char *token = conn_token(c);
    size_t b = pb_bytes(body, 1, token, strlen(token));
    b += pb_bytes(body + b, 4, "loadgen", 7);
    size_t n = pb_command(msg, 1, 4, body, b); /* connect is field 4 of Command */
    c->replies_needed = 1;
    if (!c->is_publisher && cfg.channel[0]) {
        const char *ch = conn_channel(c);
        b = pb_bytes(body, 1, ch, strlen(ch));
        n += pb_command(msg + n, 2, 5, body, b); /* subscribe is field 5 */
        c->replies_needed = 2;
    }
    send_frame(c, 0x2, msg, n);
}

static void send_hello(conn_t *c) {
    char msg[4096];
    if (cfg.proto == P_SOCKETIO) return; /* the server speaks first (the open packet) */
    if (cfg.proto == P_PROTOBUF) {
        send_hello_protobuf(c);
        return;
    }
    if (cfg.proto == P_WS) {
        int n = snprintf(msg, sizeof msg, "{\"token\":\"%s\",\"channel\":\"%s\"}",
                         conn_token(c), c->is_publisher ? "" : conn_channel(c));
        if ((size_t)n >= sizeof msg) die("token too long");
        send_text(c, msg, (size_t)n);
        return;
    }
    const char *token = conn_token(c);
    int n = snprintf(msg, sizeof msg, "{\"id\":1,\"connect\":{\"token\":\"%s\",\"name\":\"loadgen\"}}",
                     token);
    c->replies_needed = 1;
    if (!c->is_publisher && cfg.channel[0]) {
        n += snprintf(msg + n, sizeof msg - (size_t)n, "\n{\"id\":2,\"subscribe\":{\"channel\":\"%s\"}}",
                      conn_channel(c));
        c->replies_needed = 2;
    }
    if ((size_t)n >= sizeof msg) die("token too long");
    send_text(c, msg, (size_t)n);
}

static void became_ready(conn_t *c) {
    uint64_t t = now_ns();
    c->state = S_READY;
    in_setup--;
    hist_add_ns(&h_ready, t - c->t_start);
    if (c->lost_ns) {
        hist_add_ns(&h_reconnect, t - c->lost_ns);
        c->lost_ns = 0;
        reconnected++;
        storm_last_ready = t;
    }
    if (c->is_publisher)
        publisher_ready = 1;
    else
        ready_subs++;
}

/* A publication's data ({"t":<ns>,"s":<seq>,...}) starts at p: count and time it. */
static void handle_delivery(const char *p, const char *end, uint64_t t) {
    const char *q;
    uint64_t sent = parse_u64(p, end, &q);
    if (q + 5 > end || memcmp(q, ",\"s\":", 5) != 0) {
        err_protocol++;
        return;
    }
    uint64_t seq = parse_u64(q + 5, end, &q);
    deliveries++;
    /* the first --warmup publications meet cold sockets and caches: not measured */
    if (seq >= (uint64_t)cfg.warmup) hist_add_ns(&h_latency, t > sent ? t - sent : 0);
    if (pub_count && seq < (uint64_t)cfg.pubs) {
        pub_count[seq]++;
        pub_last_ns[seq] = t;
    }
}

static const char data_start[] = "{\"t\":";

/* One Socket.IO packet (a text frame). */
static void handle_sio(conn_t *c, const char *m, size_t n, uint64_t t) {
    if (n == 1 && m[0] == '2') { /* Engine.IO ping */
        pings++;
        send_text(c, "3", 1);
        return;
    }
    if (n >= 2 && m[0] == '4' && m[1] == '2') {
        const char *p = memmem(m, n, data_start, sizeof data_start - 1);
        if (!p) {
            other_pushes++;
            return;
        }
        handle_delivery(p + sizeof data_start - 1, m + n, t);
        return;
    }
    if (m[0] == '0' && c->state == S_HELLO) { /* open packet: connect to "/" with the JWT */
        char msg[4096];
        int len = snprintf(msg, sizeof msg, "40{\"token\":\"%s\"}", conn_token(c));
        if ((size_t)len >= sizeof msg) die("token too long");
        send_text(c, msg, (size_t)len);
        return;
    }
    if (n >= 2 && m[0] == '4' && m[1] == '0' && c->state == S_HELLO) {
        replies_ok++;
        sio_after_connect(c);
        return;
    }
    if (n >= 2 && m[0] == '4' && m[1] == '3' && c->state == S_HELLO) { /* subscribe ack */
        replies_ok++;
        became_ready(c);
        return;
    }
    if (n >= 2 && m[0] == '4' && m[1] == '3' && cfg.rooms) { /* a member publication's ack */
        if (memmem(m, n, "[true]", 6)) {
            replies_ok++;
            pub_acks++;
        } else {
            err_reply++;
            pub_errors++;
        }
        return;
    }
    if (n >= 2 && m[0] == '4' && (m[1] == '4' || m[1] == '1')) { /* refused or disconnected */
        err_reply++;
        conn_close(c);
        return;
    }
    err_protocol++;
}

/* One message of the plain WebSocket peer (a text frame). */
static void handle_ws(conn_t *c, const char *m, size_t n, uint64_t t) {
    if (n > sizeof data_start - 1 && memcmp(m, data_start, sizeof data_start - 1) == 0) {
        handle_delivery(m + sizeof data_start - 1, m + n, t);
        return;
    }
    if (c->state == S_HELLO && n >= 6 && memcmp(m, "{\"ok\":", 6) == 0) {
        replies_ok++;
        became_ready(c);
        return;
    }
    if (n >= 9 && memcmp(m, "{\"error\":", 9) == 0) {
        err_reply++;
        conn_close(c);
        return;
    }
    err_protocol++;
}

/* A command's answer, in either encoding: an error, the connect/subscribe replies that
 * make a connection ready, or a publication's acknowledgement. */
static void handle_answer(conn_t *c, uint64_t id, int is_error) {
    if (is_error) {
        err_reply++;
        if ((c->is_publisher || cfg.rooms) && c->state == S_READY) pub_errors++;
        if (c->state == S_HELLO) conn_close(c);
        return;
    }
    replies_ok++;
    if (c->state == S_HELLO && id <= 2) {
        if (--c->replies_needed == 0) became_ready(c);
    } else if (c->is_publisher || cfg.rooms) {
        pub_acks++;
    }
}

/* One JSON message (a line of a text frame). Only what the benchmark needs is parsed. */
static void handle_message(conn_t *c, const char *m, size_t n, uint64_t t) {
    if (n == 2 && m[0] == '{' && m[1] == '}') { /* server ping: answer with a pong */
        pings++;
        send_text(c, "{}", 2);
        return;
    }
    if (n > 8 && memcmp(m, "{\"push\":", 8) == 0) {
        static const char needle[] = "\"pub\":{\"data\":{\"t\":";
        const char *p = memmem(m, n, needle, sizeof needle - 1);
        if (!p) {
            other_pushes++;
            return;
        }
        handle_delivery(p + sizeof needle - 1, m + n, t);
        return;
    }
    if (n > 6 && memcmp(m, "{\"id\":", 6) == 0) {
        const char *q;
        uint64_t id = parse_u64(m + 6, m + n, &q);
        handle_answer(c, id, q + 9 <= m + n && memcmp(q, ",\"error\":", 9) == 0);
        return;
    }
    err_protocol++;
}

/* One Protobuf Reply: a ping (empty), a push (a publication is timed), or a command's
 * answer; the same bookkeeping as handle_message. */
static void handle_pb_reply(conn_t *c, const unsigned char *m, size_t n, uint64_t t) {
    const unsigned char *end = m + n, *push, *pub, *data;
    size_t push_len, pub_len, data_len;
    if (n == 0) { /* server ping: an empty Command is the pong */
        pings++;
        send_frame(c, 0x2, "\0", 1);
        return;
    }
    if (pb_find(m, end, 4, &push, &push_len)) {
        if (pb_find(push, push + push_len, 4, &pub, &pub_len) &&
            pb_find(pub, pub + pub_len, 4, &data, &data_len) && data_len > 5 &&
            memcmp(data, "{\"t\":", 5) == 0)
            handle_delivery((const char *)data + 5, (const char *)data + data_len, t);
        else
            other_pushes++;
        return;
    }
    uint64_t id = 0;
    if (m[0] == 0x08) { /* id, field 1 */
        const unsigned char *q = m + 1;
        if (!pb_read_varint(&q, end, &id)) {
            err_protocol++;
            return;
        }
    }
    const unsigned char *error;
    size_t error_len;
    handle_answer(c, id, pb_find(m, end, 2, &error, &error_len));
}

/* Parse complete server frames in buf; returns bytes consumed. */
static size_t handle_frames(conn_t *c, const char *buf, size_t len, uint64_t t) {
    size_t off = 0;
    while (len - off >= 2 && c->state != S_CLOSED) {
        const unsigned char *b = (const unsigned char *)buf + off;
        int opcode = b[0] & 0x0f;
        uint64_t plen = b[1] & 0x7f;
        size_t h = 2;
        if (plen == 126) {
            if (len - off < 4) break;
            plen = ((uint64_t)b[2] << 8) | b[3];
            h = 4;
        } else if (plen == 127) {
            if (len - off < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | b[2 + i];
            h = 10;
        }
        if (b[1] & 0x80) h += 4; /* servers must not mask; tolerate it anyway */
        if (len - off < h + plen) break;
        const char *payload = buf + off + h;
        off += h + plen;
        switch (opcode) {
        case 0x1: {
            uint64_t before = deliveries;
            if (cfg.proto == P_PROTOBUF) { /* a binary connection sends no text */
                err_protocol++;
                conn_close(c);
                return off;
            }
            if (cfg.proto != P_CENTRIFUGE) {
                if (plen == 0) break;
                if (cfg.proto == P_SOCKETIO)
                    handle_sio(c, payload, (size_t)plen, t);
                else
                    handle_ws(c, payload, (size_t)plen, t);
                if (deliveries > before) pub_frames++;
                if (c->state == S_CLOSED) return off;
                break;
            }
            const char *p = payload, *end = payload + plen;
            while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *stop = nl ? nl : end;
                if (stop > p) handle_message(c, p, (size_t)(stop - p), t);
                if (c->state == S_CLOSED) return off;
                p = stop + 1;
            }
            if (deliveries > before) pub_frames++;
            break;
        }
        case 0x2: {
            if (cfg.proto != P_PROTOBUF) {
                err_protocol++;
                conn_close(c);
                return off;
            }
            uint64_t before = deliveries;
            const unsigned char *p = (const unsigned char *)payload, *end = p + plen;
            while (p < end && c->state != S_CLOSED) {
                uint64_t mlen;
                if (!pb_read_varint(&p, end, &mlen) || mlen > (uint64_t)(end - p)) {
                    err_protocol++;
                    break;
                }
                handle_pb_reply(c, p, (size_t)mlen, t);
                p += mlen;
            }
            if (deliveries > before) pub_frames++;
            if (c->state == S_CLOSED) return off;
            break;
        }
        case 0x8: {
            int code = plen >= 2 ? ((unsigned char)payload[0] << 8) | (unsigned char)payload[1]
                                 : 1005;
            record_close_code(code);
            closed_by_server++;
            conn_close(c);
            return off;
        }
        case 0x9:
            send_frame(c, 0xA, payload, plen);
            break;
        case 0xA:
            break;
        default:
            err_protocol++;
            conn_close(c);
            return off;
        }
    }
    return off;
}

/* HTTP/1.1 responses of the server API; returns bytes consumed. A response that is
 * not 200 or whose body holds "error" counts its publications as errors. */
static size_t handle_http(conn_t *c, const char *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        const char *head = buf + off;
        const char *hdr_end = memmem(head, len - off, "\r\n\r\n", 4);
        if (!hdr_end) break;
        size_t head_len = (size_t)(hdr_end - head) + 4, body_len = 0;
        int found = 0;
        for (const char *line = head; line < hdr_end;) {
            const char *eol = memmem(line, (size_t)(hdr_end - line) + 2, "\r\n", 2);
            if (!eol) break;
            if (eol - line > 15 && strncasecmp(line, "content-length:", 15) == 0) {
                const char *q = line + 15;
                while (*q == ' ') q++;
                body_len = (size_t)parse_u64(q, eol, &q);
                found = 1;
            }
            if (eol - line > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0)
                die("the server API answered with a chunked body; only Content-Length is read");
            line = eol + 2;
        }
        if (!found) die("the server API answered without Content-Length");
        if (len - off < head_len + body_len) break;
        if (http_head >= http_tail) {
            err_protocol++;
            conn_close(c);
            return off;
        }
        int count = http_inflight[http_head++];
        int ok = len - off >= 12 && memcmp(head, "HTTP/1.1 200", 12) == 0 &&
                 !memmem(head + head_len, body_len, "\"error\"", 7);
        if (ok)
            pub_acks += (uint64_t)count;
        else
            pub_errors += (uint64_t)count;
        replies_ok += ok;
        err_reply += !ok;
        off += head_len + body_len;
    }
    return off;
}

static char scratch[1 << 18];

static void on_readable(conn_t *c) {
    ssize_t r = read(c->fd, scratch, sizeof scratch);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (c->state == S_CONNECTING || c->state == S_UPGRADE)
            err_connect++;
        else
            err_eof++;
        conn_close(c);
        return;
    }
    uint64_t t = now_ns();
    const char *data = scratch;
    size_t len = (size_t)r;
    if (c->rlen > 0) {
        buf_append(&c->rbuf, &c->rlen, &c->rcap, data, len);
        data = c->rbuf;
        len = c->rlen;
    }
    size_t off = 0;
    if (c->state == S_UPGRADE) {
        const char *hdr_end = memmem(data, len, "\r\n\r\n", 4);
        if (!hdr_end) {
            if (data == scratch) buf_append(&c->rbuf, &c->rlen, &c->rcap, data, len);
            return;
        }
        if (len < 12 || memcmp(data, "HTTP/1.1 101", 12) != 0) {
            err_upgrade++;
            conn_close(c);
            return;
        }
        c->t_upgraded = t;
        hist_add_ns(&h_upgrade, t - c->t_start);
        c->state = S_HELLO;
        off = (size_t)(hdr_end + 4 - data);
        send_hello(c);
    }
    if (c->state != S_CLOSED) {
        if (c->is_publisher && cfg.api_key)
            off += handle_http(c, data + off, len - off);
        else
            off += handle_frames(c, data + off, len - off, t);
    }
    if (c->state == S_CLOSED) return;
    size_t rest = len - off;
    if (data == scratch) {
        if (rest) buf_append(&c->rbuf, &c->rlen, &c->rcap, data + off, rest);
    } else {
        memmove(c->rbuf, c->rbuf + off, rest);
        c->rlen = rest;
    }
}

static void on_writable(conn_t *c) {
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            err_connect++;
            conn_close(c);
            return;
        }
        set_events(c, EPOLLIN);
        if (c->is_publisher && cfg.api_key) { /* plain HTTP: ready once connected */
            c->state = S_HELLO;
            became_ready(c);
            return;
        }
        c->state = S_UPGRADE;
        conn_write(c, handshake_req, handshake_len);
        return;
    }
    conn_flush(c);
}

/* ------------------------------------------------------------- publishing */

static conn_t *publisher(void) { return cfg.pubs > 0 && !cfg.rooms ? &conns[cfg.conns] : NULL; }

static uint64_t room_size(void) {
    return cfg.rooms ? (uint64_t)(cfg.conns / cfg.rooms) : (uint64_t)ready_subs;
}

static size_t put_data(char *buf, size_t cap, size_t n, uint64_t stamp);

/* --rooms: the next ready subscriber sends one publication into its own room. */
static void send_member_pub(uint64_t stamp) {
    static int next_sender;
    conn_t *c = NULL;
    for (int tries = 0; tries < cfg.conns && !c; tries++) {
        conn_t *candidate = &conns[next_sender++ % cfg.conns];
        if (candidate->state == S_READY) c = candidate;
    }
    if (!c) return;
    char msg[4096];
    size_t n;
    if (cfg.proto == P_CENTRIFUGE)
        n = (size_t)snprintf(msg, sizeof msg, "{\"id\":%ld,\"publish\":{\"channel\":\"%s\",\"data\":",
                             ++next_cmd_id, conn_channel(c));
    else if (cfg.proto == P_SOCKETIO)
        n = (size_t)snprintf(msg, sizeof msg, "42%ld[\"publish\",{\"channel\":\"%s\",\"data\":",
                             ++next_cmd_id, conn_channel(c));
    else
        n = (size_t)snprintf(msg, sizeof msg, "{\"data\":");
    if (n + (size_t)cfg.size + 8 > sizeof msg) die("--size too large for --rooms");
    n = put_data(msg, sizeof msg, n, stamp);
    if (cfg.proto == P_CENTRIFUGE) {
        memcpy(msg + n, "}}", 2);
        n += 2;
    } else if (cfg.proto == P_SOCKETIO) {
        memcpy(msg + n, "}]", 2);
        n += 2;
    } else {
        msg[n++] = '}';
        pub_acks++; /* ws has no acknowledgements */
    }
    pub_sent_ns[pubs_sent] = stamp;
    pubs_sent++;
    last_send_ns = now_ns();
    send_text(c, msg, n);
}

/* Append one publication's data, {"t":<ns>,"s":<seq>,"p":"xxx"} padded to cfg.size bytes. */
static size_t put_data(char *buf, size_t cap, size_t n, uint64_t stamp) {
    size_t d0 = n;
    int w = snprintf(buf + n, cap - n, "{\"t\":%llu,\"s\":%ld,\"p\":\"",
                     (unsigned long long)stamp, pubs_sent);
    n += (size_t)w;
    while (n - d0 + 2 < (size_t)cfg.size) buf[n++] = 'x';
    memcpy(buf + n, "\"}", 2);
    return n + 2;
}

/* Send the next batch of publications as one frame (or one API request); stamp is the
 * time they carry. */
static void send_batch(uint64_t stamp) {
    if (cfg.rooms) {
        send_member_pub(stamp);
        return;
    }
    conn_t *p = publisher();
    static char *frame, *body;
    static size_t cap;
    size_t need = (size_t)cfg.batch * ((size_t)cfg.size + strlen(cfg.channel) + 96) + 512;
    if (need > cap) {
        cap = need;
        frame = xrealloc(frame, cap);
        body = xrealloc(body, cap);
    }
    size_t n = 0;
    int in_batch = 0;
    if (cfg.api_key) {
        /* the server API: {"channel":..,"data":..} or a batch of publish commands */
        if (cfg.batch > 1) n += (size_t)snprintf(body, cap, "{\"commands\":[");
        for (; in_batch < cfg.batch && pubs_sent < cfg.pubs; in_batch++) {
            if (cfg.batch > 1)
                n += (size_t)snprintf(body + n, cap - n, "%s{\"publish\":", in_batch ? "," : "");
            n += (size_t)snprintf(body + n, cap - n, "{\"channel\":\"%s\",\"data\":", cfg.channel);
            n = put_data(body, cap, n, stamp);
            body[n++] = '}';
            if (cfg.batch > 1) body[n++] = '}';
            pub_sent_ns[pubs_sent] = stamp;
            pubs_sent++;
        }
        if (cfg.batch > 1) n += (size_t)snprintf(body + n, cap - n, "]}");
        int h = snprintf(frame, cap,
                         "POST %s/%s HTTP/1.1\r\nHost: %s:%d\r\nX-API-Key: %s\r\n"
                         "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                         cfg.api_path, cfg.batch > 1 ? "batch" : "publish", cfg.host, cfg.port,
                         cfg.api_key, n);
        http_inflight[http_tail++] = in_batch;
        last_send_ns = now_ns();
        conn_write(p, frame, (size_t)h);
        conn_write(p, body, n);
        return;
    }
    if (cfg.proto == P_PROTOBUF) {
        char data[8192], body[8192];
        size_t ch = strlen(cfg.channel);
        for (; in_batch < cfg.batch && pubs_sent < cfg.pubs; in_batch++) {
            size_t d = put_data(data, sizeof data, 0, stamp);
            size_t b = pb_bytes(body, 1, cfg.channel, ch);
            b += pb_bytes(body + b, 2, data, d);
            n += pb_command(frame + n, (uint64_t)++next_cmd_id, 7, body, b); /* publish: 7 */
            pub_sent_ns[pubs_sent] = stamp;
            pubs_sent++;
        }
        last_send_ns = now_ns();
        send_frame(p, 0x2, frame, n);
        return;
    }
    for (; in_batch < cfg.batch && pubs_sent < cfg.pubs; in_batch++) {
        if (n) frame[n++] = '\n';
        int w = snprintf(frame + n, cap - n,
                         "{\"id\":%ld,\"publish\":{\"channel\":\"%s\",\"data\":", ++next_cmd_id,
                         cfg.channel);
        n += (size_t)w;
        n = put_data(frame, cap, n, stamp);
        memcpy(frame + n, "}}", 2);
        n += 2;
        pub_sent_ns[pubs_sent] = stamp;
        pubs_sent++;
    }
    last_send_ns = now_ns();
    send_text(p, frame, n);
}

static void arm_timer(uint64_t first_ns, uint64_t interval_ns) {
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(first_ns / 1000000000ull);
    its.it_value.tv_nsec = (long)(first_ns % 1000000000ull);
    its.it_interval.tv_sec = (time_t)(interval_ns / 1000000000ull);
    its.it_interval.tv_nsec = (long)(interval_ns % 1000000000ull);
    timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static uint64_t batch_interval_ns(void) { return (uint64_t)(1e9 * cfg.batch / cfg.rate); }

static void start_publishing(void) {
    publishing = 1;
    publish_start = now_ns();
    int can_send = cfg.rooms ? ready_subs > 0 : publisher() && publisher_ready;
    if (!can_send || cfg.pubs == 0) {
        publish_done = 1;
        publish_end = publish_start;
        return;
    }
    if (cfg.rate > 0) {
        /* open loop: batches due at fixed times, stamped with the due time */
        arm_timer(publish_start, batch_interval_ns());
    } else {
        send_batch(now_ns());
    }
}

static void on_timer(void) {
    uint64_t expirations;
    if (read(timer_fd, &expirations, sizeof expirations) < 0) return;
    if (!publishing || publish_done || !(cfg.rooms || publisher_ready)) return;
    gap_pending = 0;
    if (cfg.rate > 0) {
        uint64_t interval = batch_interval_ns(), t = now_ns();
        long due = (long)((t - publish_start) / interval) + 1;
        while (pubs_sent < cfg.pubs && pubs_sent / cfg.batch < due)
            send_batch(publish_start + (uint64_t)(pubs_sent / cfg.batch) * interval);
        if (pubs_sent >= cfg.pubs) arm_timer(0, 0);
    } else {
        send_batch(now_ns());
    }
}

/* Closed loop: the next batch goes out once every subscriber has the previous one. */
static void check_progress(void) {
    if (!publishing || publish_done) return;
    /* a publication the server refused will never arrive: it is settled by its error */
    uint64_t accepted = (uint64_t)pubs_sent > pub_errors ? (uint64_t)pubs_sent - pub_errors : 0;
    uint64_t expected = accepted * room_size();
    int delivered = deliveries >= expected && pub_acks + pub_errors >= (uint64_t)pubs_sent;
    uint64_t t = now_ns();
    if (pubs_sent >= cfg.pubs && (delivered || t - last_send_ns > (uint64_t)(cfg.timeout_s * 1e9))) {
        publish_done = 1;
        publish_end = t;
        return;
    }
    if (cfg.rate > 0 || !delivered || pubs_sent >= cfg.pubs || gap_pending) return;
    if (cfg.gap_ms > 0) {
        gap_pending = 1;
        arm_timer(t + (uint64_t)(cfg.gap_ms * 1e6), 0);
    } else
        send_batch(t);
}

/* ---------------------------------------------------------------- report */

static void print_report(const char *event) {
    FILE *f = stdout;
    double setup_s = (double)(setup_end - setup_start) / 1e9;
    fprintf(f, "{\"event\":\"%s\",\"conns\":%d,\"ready\":%d,\"failed\":%d,", event, cfg.conns,
            ready_subs, failed);
    fprintf(f, "\"setup\":{\"seconds\":%.3f,", setup_s);
    hist_json(f, "upgrade_ms", &h_upgrade);
    fputc(',', f);
    hist_json(f, "ready_ms", &h_ready);
    fprintf(f, "},");
    if (publishing) {
        uint64_t complete = 0;
        hist_init(&h_last);
        for (long s = 0; s < pubs_sent; s++) {
            if (pub_count[s] >= (uint32_t)room_size() && room_size() > 0) {
                complete++;
                if (s >= cfg.warmup) hist_add_ns(&h_last, pub_last_ns[s] - pub_sent_ns[s]);
            }
        }
        double secs = (double)(publish_end - publish_start) / 1e9;
        fprintf(f,
                "\"publish\":{\"sent\":%ld,\"acks\":%llu,\"batch\":%d,\"rate\":%.1f,"
                "\"seconds\":%.3f,\"complete\":%llu},",
                pubs_sent, (unsigned long long)pub_acks, cfg.batch, cfg.rate, secs,
                (unsigned long long)complete);
        fprintf(f, "\"frames_with_publications\":%llu,", (unsigned long long)pub_frames);
        fprintf(f, "\"deliveries\":%llu,\"expected\":%llu,\"deliveries_per_second\":%.0f,",
                (unsigned long long)deliveries,
                (unsigned long long)((uint64_t)pubs_sent * room_size()),
                secs > 0 ? (double)deliveries / secs : 0.0);
        hist_json(f, "latency_ms", &h_latency);
        fputc(',', f);
        hist_json(f, "last_ms", &h_last);
        fputc(',', f);
    }
    fprintf(f,
            "\"pings\":%llu,\"other_pushes\":%llu,\"errors\":{\"connect\":%llu,"
            "\"upgrade\":%llu,\"eof\":%llu,\"error_replies\":%llu,\"protocol\":%llu,"
            "\"closed_by_server\":%llu},\"close_codes\":{",
            (unsigned long long)pings, (unsigned long long)other_pushes,
            (unsigned long long)err_connect, (unsigned long long)err_upgrade,
            (unsigned long long)err_eof, (unsigned long long)err_reply,
            (unsigned long long)err_protocol, (unsigned long long)closed_by_server);
    for (int i = 0; i < n_close_codes; i++)
        fprintf(f, "%s\"%d\":%d", i ? "," : "", close_codes[i][0], close_codes[i][1]);
    fputc('}', f);
    if (storm) {
        fprintf(f,
                ",\"storm\":{\"seconds\":%.3f,\"clients\":%llu,\"reconnected\":%llu,"
                "\"failures\":%llu,",
                storm_last_ready > storm_start ? (double)(storm_last_ready - storm_start) / 1e9
                                               : 0.0,
                (unsigned long long)storm_target, (unsigned long long)reconnected, (unsigned long long)reconnect_failures);
        hist_json(f, "reconnect_ms", &h_reconnect);
        fputc('}', f);
    }
    fprintf(f, "}\n");
    fflush(f);
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P [--host H] [--path P] [--conns N] [--channel CH]\n"
            "               [--tokens FILE] [--pub-token JWT --pubs M [--batch B]\n"
            "               [--rate R | --gap-ms G] [--size BYTES]] [--concurrency C]\n"
            "               [--timeout S] [--warmup K] [--wait] [--more-ports P2,P3,...]\n"
            "               [--proto centrifuge|socketio|ws|protobuf] [--api-key KEY [--api-path P]]\n"
            "               [--rooms K] [--reconnect-port P]\n");
    exit(2);
}

static void raise_fd_limit(int need) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur >= (rlim_t)need) return;
    if (rl.rlim_max < (rlim_t)need) {
        rl.rlim_max = (rlim_t)need; /* needs CAP_SYS_RESOURCE; fall back to the hard limit */
        rl.rlim_cur = (rlim_t)need;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0) return;
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)need)
        die("fd limit %llu is below the %d needed", (unsigned long long)rl.rlim_cur, need);
}

/* Read "go" / "quit" commands from the runner. Returns 1 on quit or EOF. */
static int on_stdin(void) {
    char line[64];
    ssize_t r = read(0, line, sizeof line - 1);
    if (r <= 0) return 1;
    line[r] = 0;
    if (strstr(line, "quit")) return 1;
    if (strstr(line, "storm") && cfg.reconnect_port && !storm) {
        storm = 1;
        storm_start = now_ns();
        storm_target = (uint64_t)ready_subs;
    } else if (strstr(line, "go") && !publishing)
        start_publishing();
    return 0;
}

int main(int argc, char **argv) {
    static struct option opts[] = {
        {"host", required_argument, 0, 'H'},    {"port", required_argument, 0, 'p'},
        {"path", required_argument, 0, 'P'},    {"conns", required_argument, 0, 'n'},
        {"channel", required_argument, 0, 'c'}, {"tokens", required_argument, 0, 't'},
        {"pub-token", required_argument, 0, 'T'}, {"pubs", required_argument, 0, 'm'},
        {"batch", required_argument, 0, 'b'},   {"rate", required_argument, 0, 'r'},
        {"gap-ms", required_argument, 0, 'g'},  {"size", required_argument, 0, 's'},
        {"concurrency", required_argument, 0, 'C'}, {"timeout", required_argument, 0, 'o'},
        {"wait", no_argument, 0, 'w'},          {"more-ports", required_argument, 0, 'M'},
        {"warmup", required_argument, 0, 'W'},  {"proto", required_argument, 0, 'x'},
        {"api-key", required_argument, 0, 'k'}, {"api-path", required_argument, 0, 'A'},
        {"rooms", required_argument, 0, 'R'},   {"reconnect-port", required_argument, 0, 'N'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'H': cfg.host = optarg; break;
        case 'p': cfg.port = atoi(optarg); break;
        case 'P': cfg.path = optarg; break;
        case 'n': cfg.conns = atoi(optarg); break;
        case 'c': cfg.channel = optarg; break;
        case 't': cfg.tokens_file = optarg; break;
        case 'T': cfg.pub_token = optarg; break;
        case 'm': cfg.pubs = atol(optarg); break;
        case 'b': cfg.batch = atoi(optarg); break;
        case 'r': cfg.rate = atof(optarg); break;
        case 'g': cfg.gap_ms = atof(optarg); break;
        case 's': cfg.size = atoi(optarg); break;
        case 'C': cfg.concurrency = atoi(optarg); break;
        case 'o': cfg.timeout_s = atof(optarg); break;
        case 'w': cfg.wait = 1; break;
        case 'W': cfg.warmup = atol(optarg); break;
        case 'x':
            if (strcmp(optarg, "centrifuge") == 0) cfg.proto = P_CENTRIFUGE;
            else if (strcmp(optarg, "socketio") == 0) cfg.proto = P_SOCKETIO;
            else if (strcmp(optarg, "ws") == 0) cfg.proto = P_WS;
            else if (strcmp(optarg, "protobuf") == 0) cfg.proto = P_PROTOBUF;
            else die("--proto is centrifuge, socketio, ws or protobuf, not %s", optarg);
            break;
        case 'k': cfg.api_key = optarg; break;
        case 'R': cfg.rooms = atoi(optarg); break;
        case 'N': cfg.reconnect_port = atoi(optarg); break;
        case 'A': cfg.api_path = optarg; break;
        case 'M':
            for (char *tok = strtok(optarg, ","); tok && n_ports < 16; tok = strtok(NULL, ","))
                ports[n_ports++] = (uint16_t)atoi(tok);
            break;
        default: usage();
        }
    }
    ports[0] = (uint16_t)cfg.port;
    if (cfg.port <= 0 || cfg.conns < 0 || cfg.batch < 1 || cfg.concurrency < 1) usage();
    if (cfg.pubs > 0 && !cfg.channel[0]) die("--pubs needs --channel");
    if (cfg.rooms < 0 || (cfg.rooms && (cfg.conns % cfg.rooms || cfg.batch != 1)))
        die("--rooms must divide --conns, with --batch 1");
    if (cfg.pubs > 0 && !cfg.rooms && !cfg.pub_token && !cfg.api_key)
        die("--pubs needs --pub-token or --api-key");
    if (cfg.pubs > 0 && !cfg.rooms && !cfg.api_key && cfg.proto != P_CENTRIFUGE &&
        cfg.proto != P_PROTOBUF)
        die("with --proto socketio or ws the publisher uses the server API: give --api-key");
    if (cfg.rooms && cfg.proto == P_PROTOBUF) die("--rooms is not built for --proto protobuf");
    if (cfg.size < 40) cfg.size = 40;
    if (cfg.tokens_file) load_tokens(cfg.tokens_file);

    n_conns = cfg.conns + (publisher() ? 1 : 0);
    raise_fd_limit(n_conns + 64);
    conns = calloc((size_t)(n_conns ? n_conns : 1), sizeof(conn_t));
    if (!conns) die("out of memory");
    for (int i = 0; i < n_conns; i++) {
        conns[i].fd = -1;
        conns[i].index = i;
        conns[i].is_publisher = i == cfg.conns;
    }
    if (cfg.pubs > 0) {
        pub_sent_ns = calloc((size_t)cfg.pubs, sizeof(uint64_t));
        pub_last_ns = calloc((size_t)cfg.pubs, sizeof(uint64_t));
        pub_count = calloc((size_t)cfg.pubs, sizeof(uint32_t));
        http_inflight = calloc((size_t)cfg.pubs + 1, sizeof(int));
        if (!pub_sent_ns || !pub_last_ns || !pub_count || !http_inflight) die("out of memory");
    }
    hist_init(&h_latency);
    hist_init(&h_upgrade);
    hist_init(&h_ready);
    hist_init(&h_reconnect);

    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)cfg.port);
    if (inet_pton(AF_INET, cfg.host, &server_addr.sin_addr) != 1) die("bad host %s", cfg.host);
    handshake_len = (size_t)snprintf(handshake_req, sizeof handshake_req,
                                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                                     "Connection: Upgrade\r\n"
                                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                                     cfg.path, cfg.host, cfg.port,
                                     cfg.proto == P_PROTOBUF
                                         ? "Sec-WebSocket-Protocol: centrifuge-protobuf\r\n"
                                         : "");

    epfd = epoll_create1(EPOLL_CLOEXEC);
    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, timer_fd, &tev);
    static conn_t stdin_marker;
    if (cfg.wait) {
        struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &stdin_marker};
        epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
    }

    setup_start = now_ns();
    uint64_t setup_deadline = setup_start + (uint64_t)(cfg.timeout_s * 1e9);
    int next = 0, setup_done = 0, quit = 0;
    struct epoll_event events[1024];
    while (!quit) {
        while (!setup_done && next < n_conns && in_setup < cfg.concurrency)
            start_connection(&conns[next++]);
        int timeout_ms = 100;
        int n = epoll_wait(epfd, events, 1024, timeout_ms);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c == NULL) {
                on_timer();
                continue;
            }
            if (c == &stdin_marker) {
                if (on_stdin()) quit = 1;
                continue;
            }
            if (c->state == S_CLOSED) continue;
            if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                if (c->state == S_CONNECTING || c->wlen > 0) on_writable(c);
                else if (events[i].events & (EPOLLERR | EPOLLHUP)) on_readable(c);
            }
            if (c->state != S_CLOSED && c->state != S_CONNECTING && (events[i].events & EPOLLIN))
                on_readable(c);
        }
        if (!setup_done) {
            int all_started = next >= n_conns;
            if ((all_started && in_setup == 0) || now_ns() > setup_deadline) {
                setup_done = 1;
                setup_end = now_ns();
                for (int i = 0; i < n_conns; i++)
                    if (conns[i].state != S_READY && conns[i].state != S_CLOSED) conn_close(&conns[i]);
                if (cfg.wait)
                    print_report("ready");
                else
                    start_publishing();
            }
            continue;
        }
        if (storm) {
            uint64_t t = now_ns();
            if (retries_pending) /* reconnects due: none started from inside conn_close */
                for (int i = 0; i < cfg.conns; i++)
                    if (conns[i].retry_ns && conns[i].retry_ns <= t) {
                        conns[i].retry_ns = 0;
                        retries_pending--;
                        start_connection(&conns[i]);
                    }
            if (!storm_reported && (reconnected >= storm_target ||
                                    t - storm_start > (uint64_t)(cfg.timeout_s * 1e9))) {
                storm_reported = 1;
                print_report("reconnected");
            }
        }
        check_progress();
        if (publish_done && publishing == 1) {
            publishing = 2; /* report once */
            print_report("done");
            if (!cfg.wait) quit = 1;
        }
    }
    stopping = 1;
    for (int i = 0; i < n_conns; i++) conn_close(&conns[i]);
    return 0;
}
