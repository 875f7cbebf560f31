/* Azote clock shim: LD_PRELOADed into a native game, it puts the game on a virtual clock and steps it one presented
 * frame at a time under the control of a Python process that shares a memory-mapped file with it.
 *
 * - Clocks: clock_gettime (all but the CPU-time clocks), gettimeofday and time read virtual time. It starts at a
 *   fixed epoch (so games that seed their RNG from the clock behave the same every run).
 * - Start-up ("warmup"), until `warmup_frames` frames have been presented, nothing blocks; three modes:
 *   0 real time (virtual time follows the real clock from the shim's load); 1 frame time (real time until the
 *   first frame, which then happens at start_ns, then one frame period per frame); 2 virtual (the default:
 *   virtual from the start; time passes by one frame period per frame, by the main thread's sleeps, and by
 *   10 us per main-thread clock read so that set-up code polling the clock for a deadline cannot hang).
 *   Freezing time entirely at start hangs games (SDL's window set-up polls the clock); real time makes the
 *   first lockstep state depend on the loading time; mode 2 gives the same start every run. Then lockstep: after presenting frame n the game blocks in the
 *   buffer swap until the controller grants frame n (grant >= n); on waking, virtual time jumps to
 *   t0 + (n - W + 1) * period, where t0 is the virtual time when lockstep began at frame W.
 * - Sleeps (nanosleep, clock_nanosleep, usleep, sleep): in real-time warmup they sleep for real. Otherwise the
 *   game's main thread never waits: its sleep advances virtual time by the requested amount (a frame limiter then
 *   finds its deadline met); other threads wait until virtual time reaches their deadline.
 * - Frames: SDL_GL_SwapWindow, glXSwapBuffers and eglSwapBuffers read the back buffer (glReadPixels, RGBA) into
 *   the shared file before presenting it, when the controller asked for a capture size.
 * - Gamepad (when the controller sets `pad_enabled`): the pad's state (axes, buttons) lives in the shared file,
 *   written by the controller before it grants a frame; the shim copies it into the game at the frame boundary
 *   (right after the game wakes in the buffer swap), so what step t sets is what the game reads in frame t+1.
 *   Two ways in, no /dev/uinput needed: bit 0, an SDL2 virtual game controller attached when the game brings up
 *   SDL's joystick subsystem (SDL_Init / SDL_InitSubSystem; SDL is called through dlsym, never linked); bit 1, a
 *   Linux joystick device (the js API: open, ioctl JSIOCG*, read js_event) that udev enumeration lists, for games
 *   that read /dev/input/js* (SFML). See "gamepad" below.
 * - Settling (AZOTE_SETTLE=1 in the game's environment), for games whose other threads feed the main thread (a
 *   built-in server, network, mesh or map threads: Minetest): those threads take turns with the main thread. They
 *   run while it waits in a buffer swap or sleeps, and it goes on only once they are idle; their timed waits
 *   (semaphores, condition variables) run on virtual time. What they hand the main thread is then there at a
 *   frame boundary or not at all, whatever the machine's speed. See "settling" below.
 * - Fixed entropy (AZOTE_FIXED_ENTROPY=1): getrandom and getentropy read a fixed stream (Lua's hash seed).
 * Without AZOTE_SHM in the environment every call goes straight to the real function.
 */
#undef _FORTIFY_SOURCE /* the shim defines open(); fortify's inline wrapper of it would clash */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/joystick.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define AZ_MAGIC 0x4c435a41u /* "AZCL" */
#define AZ_VERSION 2u
#define AZ_PIXELS_OFFSET 4096

/* The layout the Python side (azote/envs/native/shm.py) mirrors: keep both in step. */
struct az_shm {
    uint32_t magic;          /* 0 */
    uint32_t version;        /* 4 */
    uint32_t frames;         /* 8: frames presented (futex word, shim increments) */
    uint32_t grant;          /* 12: frames released by the controller (futex word) */
    uint32_t lockstep;       /* 16: phase: 0 real time, 2 frame-time start-up, 1 lockstep */
    uint32_t warmup_frames;  /* 20 */
    uint32_t warmup_mode;    /* 24: 0 real time, 1 frame time */
    uint32_t capture_w;      /* 28: 0 = no capture */
    uint32_t capture_h;      /* 32 */
    uint32_t captured;       /* 36: frame number whose pixels are in the buffer */
    uint32_t lockstep_frame; /* 40: W, the frame at which lockstep began */
    uint32_t pid;            /* 44: process that presents frames */
    int64_t frame_ns;        /* 48 */
    int64_t epoch_ns;        /* 56: virtual CLOCK_REALTIME at virtual time 0 */
    int64_t mono_ns;         /* 64: virtual CLOCK_MONOTONIC at virtual time 0 */
    int64_t vtime_ns;        /* 72: virtual time (ns since the shim loaded) */
    int64_t t0_ns;           /* 80: virtual time when lockstep began */
    int64_t observed_ns;     /* 88: last CLOCK_MONOTONIC-like value the main thread read */
    uint64_t clock_reads;    /* 96 */
    uint64_t sleeps;         /* 104 */
    uint32_t capture_fail;   /* 112: 1 when glReadPixels could not be found */
    uint32_t pad;            /* 116 */
    int64_t fps_milli;       /* 120: frames per 1000 s (lockstep time is k * 1e12 / fps_milli ns, no drift) */
    int64_t wall0_ns;        /* 128: virtual time at which the wall clock (epoch_ns) starts to run */
    int64_t start_ns;        /* 136: virtual time of the first frame in frame-time start-up */
    uint32_t pad_enabled;    /* 144: gamepad: bit 0 SDL virtual game controller, bit 1 Linux joystick device */
    uint32_t pad_buttons;    /* 148: held buttons, bit i = azote.gamepad.BUTTONS[i] */
    int16_t pad_axes[6];     /* 152: left x, left y, right x, right y (-32767..32767, y > 0 down), triggers (0..32767) */
    uint32_t pad_status;     /* 164: set by the shim: bit 0 SDL pad attached, bit 1 js device opened, bit 2 SDL failed */
    uint32_t pad_synced;     /* 168: frames presented when the pad was last copied into the game */
    uint32_t unsettled;      /* 172: times a settling wait ran out of real time (settle() or a waking thread's) */
};

static struct az_shm *shm;
static int64_t real_start_ns; /* real CLOCK_MONOTONIC when the shim loaded */
static __thread int in_hook;
static int settling(void);
static uint32_t main_turn; /* see "Turns" below */
#ifdef AZOTE_WINE
#define WINE_OTHER 0
#define WINE_GAME 1
#define WINE_SERVER 2
static int wine_role; /* this process in a Wine session: see "Wine" at the end */
static void wine_init(void);
static void wine_sync_server(void);
static void wine_at_frame(uint32_t v);
#endif

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*nanosleep_fn)(const struct timespec *, struct timespec *);
static clock_gettime_fn real_clock_gettime;
static nanosleep_fn real_nanosleep;

static int64_t ts_ns(const struct timespec *t) { return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec; }
static struct timespec ns_ts(int64_t ns) {
    struct timespec t = {ns / 1000000000LL, ns % 1000000000LL};
    if (t.tv_nsec < 0) { t.tv_nsec += 1000000000LL; t.tv_sec -= 1; }
    return t;
}

static int64_t real_mono(void) {
    struct timespec t;
    real_clock_gettime(CLOCK_MONOTONIC, &t);
    return ts_ns(&t);
}

static void resolve(void) {
    if (!real_clock_gettime) real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    if (!real_nanosleep) real_nanosleep = (nanosleep_fn)dlsym(RTLD_NEXT, "nanosleep");
}

__attribute__((constructor)) static void az_init(void) {
    resolve();
    real_start_ns = real_mono();
    const char *path = getenv("AZOTE_SHM");
    if (!path || !*path) return;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(struct az_shm)) { close(fd); return; }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return;
    struct az_shm *s = (struct az_shm *)p;
    if (s->magic != AZ_MAGIC || s->version != AZ_VERSION) { munmap(p, (size_t)st.st_size); return; }
    shm = s;
    if (settling()) main_turn = 1;
#ifdef AZOTE_WINE
    wine_init();
#endif
}

static int is_main_thread(void) {
#ifdef AZOTE_WINE
    if (wine_role != WINE_GAME) return 0; /* only the game's main thread moves virtual time (see "Wine") */
#endif
    return syscall(SYS_gettid) == getpid();
}
static int vwait_due(void);
static void settle(void);

static int64_t load64(int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store64(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static uint32_t load32(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* Virtual nanoseconds since the shim loaded. */
static int64_t vnow(void) {
    if (!load32(&shm->lockstep) && shm->warmup_mode != 2) return real_mono() - real_start_ns;
    return load64(&shm->vtime_ns);
}

static int virtual_clock(clockid_t id) {
    switch (id) {
    case CLOCK_REALTIME: case CLOCK_MONOTONIC: case CLOCK_MONOTONIC_RAW: case CLOCK_REALTIME_COARSE:
    case CLOCK_MONOTONIC_COARSE: case CLOCK_BOOTTIME: case CLOCK_REALTIME_ALARM: case CLOCK_BOOTTIME_ALARM:
    case CLOCK_TAI:
        return 1;
    default: /* CPU-time clocks (process, thread, and the dynamic per-pid ones) stay real */
        return 0;
    }
}

static int is_wall(clockid_t id) {
    return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_REALTIME_ALARM || id == CLOCK_TAI;
}

/* The wall clock reads epoch_ns until frame-time start-up begins, then runs with virtual time: a game that seeds
 * its RNG from time() or gettimeofday() during loading gets the same seed every run. */
static int64_t virtual_value(clockid_t id, int64_t v) {
    if (!is_wall(id)) return shm->mono_ns + v;
    if (shm->warmup_mode != 1) return shm->epoch_ns + v;
    if (!load32(&shm->lockstep)) return shm->epoch_ns;
    int64_t w = v - load64(&shm->wall0_ns);
    return shm->epoch_ns + (w > 0 ? w : 0);
}

int clock_gettime(clockid_t id, struct timespec *tp) {
    resolve();
    if (!shm || !virtual_clock(id)) return real_clock_gettime(id, tp);
    int64_t v = virtual_value(id, vnow());
    *tp = ns_ts(v);
    __atomic_add_fetch(&shm->clock_reads, 1, __ATOMIC_RELAXED);
    if (is_main_thread()) {
        if (!is_wall(id)) store64(&shm->observed_ns, v);
        /* virtual start-up: each read of the clock before the first frame lets 10 us pass, so that loops which
         * wait for a deadline by polling the clock end (deterministically, as long as they poll a fixed count) */
        if (shm->warmup_mode == 2 && !load32(&shm->lockstep)) {
            __atomic_add_fetch(&shm->vtime_ns, 10000, __ATOMIC_ACQ_REL);
            if (settling() && vwait_due()) settle(); /* a waiting thread's deadline passed: let it run first */
        }
    }
    return 0;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    resolve();
    if (!shm) {
        static int (*real)(struct timeval *, void *);
        if (!real) real = (int (*)(struct timeval *, void *))dlsym(RTLD_NEXT, "gettimeofday");
        return real(tv, tz);
    }
    if (tz) memset(tz, 0, sizeof(struct timezone));
    if ((volatile void *)tv != NULL) {
        int64_t v = virtual_value(CLOCK_REALTIME, vnow());
        tv->tv_sec = v / 1000000000LL;
        tv->tv_usec = (v % 1000000000LL) / 1000;
    }
    return 0;
}

time_t time(time_t *out) {
    resolve();
    time_t t;
    if (!shm) {
        struct timespec ts;
        real_clock_gettime(CLOCK_REALTIME, &ts);
        t = ts.tv_sec;
    } else {
        t = (time_t)(virtual_value(CLOCK_REALTIME, vnow()) / 1000000000LL);
    }
    if (out) *out = t;
    return t;
}

static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *timeout) {
    return syscall(SYS_futex, addr, op, val, timeout, NULL, 0);
}

/* ---- settling (AZOTE_SETTLE=1 in the game's environment), for games whose other threads feed the main thread
 * (a built-in server, network, mesh or map threads). The other threads run only in settle(), which the main thread
 * calls before it presents a frame (what the frame set going, packets sent and meshes asked for, is done before
 * the controller sees the frame and reads the game's files), once the controller has released the next frame and
 * virtual time has moved on, and when it sleeps; settle() returns once none of them is running (state R or D in
 * /proc/self/task/<tid>/stat) and none sits in a virtual wait whose deadline has passed, in SETTLE_SCANS looks in
 * a row SETTLE_GAP_NS apart (at most SETTLE_MAX_NS of real time). Outside settle() they do not come back from
 * their waits (see "Turns"). What they do between two frames then no longer depends on how fast the machine
 * runs them next to the main thread. */
#include <dirent.h>
#include <stdio.h>
#define SETTLE_SCANS 3
#define SETTLE_GAP_NS 150000LL
#define SETTLE_MAX_NS 5000000000LL
#define WAKE_MAX_NS 2000000000LL /* a woken thread waits at most this long (real time) for the others */
#define VWAIT_SLOTS 64
static int settle_on = -1;
static int64_t vwait_deadline[VWAIT_SLOTS]; /* virtual time a waiting thread wakes at; INT64_MAX: not waiting */
static int vwait_used;
static __thread int vwait_slot = -1;

static int settling(void) {
    if (settle_on < 0) {
        const char *e = getenv("AZOTE_SETTLE");
        settle_on = e && *e && *e != '0';
    }
    return settle_on && shm;
}

/* The calling thread's slot in a table of VWAIT_SLOTS (`used` of them taken), taken at its first call; -1 when the
 * table is full. */
static int thread_slot(int *used, int *slot) {
    if (*slot < 0) {
        int i = __atomic_fetch_add(used, 1, __ATOMIC_ACQ_REL);
        if (i >= VWAIT_SLOTS) return -1;
        *slot = i;
    }
    return *slot;
}

/* A virtual wait of this (non-main) thread until virtual time `deadline`, or its end (deadline INT64_MAX). */
static void vwait_mark(int64_t deadline) {
    if (!settling()) return;
    int i = thread_slot(&vwait_used, &vwait_slot);
    if (i >= 0) __atomic_store_n(&vwait_deadline[i], deadline, __ATOMIC_RELEASE);
}

static int vwait_due(void) {
    int n = __atomic_load_n(&vwait_used, __ATOMIC_ACQUIRE);
    int64_t now = load64(&shm->vtime_ns);
    for (int i = 0; i < n && i < VWAIT_SLOTS; i++) {
        int64_t d = __atomic_load_n(&vwait_deadline[i], __ATOMIC_ACQUIRE);
        if (d && d <= now) return 1;
    }
    return 0;
}

/* Threads in wait_turn()'s wait for the others to be idle (their tids; 0: a free slot). They are about to run: busy
 * for settle(), but idle for each other, or two of them that wake together would each wait for the other until the
 * wait's limit (they poll /proc, so each often sees the other running), and on a loaded machine go on at random. */
static pid_t waking_tid[VWAIT_SLOTS];
static int waking_used;
static __thread int waking_slot = -1;

static int is_waking(pid_t tid) {
    int n = __atomic_load_n(&waking_used, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n && i < VWAIT_SLOTS; i++)
        if (__atomic_load_n(&waking_tid[i], __ATOMIC_ACQUIRE) == tid) return 1;
    return 0;
}

static void mark_waking(pid_t tid) {
    int i = thread_slot(&waking_used, &waking_slot);
    if (i >= 0) __atomic_store_n(&waking_tid[i], tid, __ATOMIC_RELEASE);
}

/* 1 if no other thread of the process is running or due to wake. For the main thread (settle), a thread about to
 * wake counts as running; for a waking thread, the main thread and the other waking threads do not count. */
static int others_idle(int for_main) {
    if (vwait_due()) return 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return 1;
    pid_t self = (pid_t)syscall(SYS_gettid);
    int idle = 1;
    struct dirent *e;
    char path[300], buf[512];
    while (idle && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid == self || (!for_main && tid == getpid())) continue;
        if (is_waking(tid)) {
            if (for_main) idle = 0;
            continue;
        }
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        if (p && (p[2] == 'R' || p[2] == 'D')) idle = 0;
    }
    closedir(d);
    return idle;
}

/* Turns: while the main thread runs (main_turn 1), the other threads do not come back from their waits (semaphores,
 * timed condition waits, virtual sleeps); they run while the main thread waits for its next frame or sleeps, and
 * settle() gives the turn back to the main thread once they are idle. So what they hand the main thread (network
 * packets, meshes, a server step) is there at a frame boundary or not at all, never half-way through a frame. */
static int main_at_frame; /* 1 while the main thread waits for the controller to release the next frame */

static void set_main_turn(uint32_t v) {
    __atomic_store_n(&main_turn, v, __ATOMIC_RELEASE);
    if (!v) futex(&main_turn, FUTEX_WAKE, 0x7fffffff, NULL);
}

static int main_thread_blocked(void) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)getpid());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && (p[2] == 'S' || p[2] == 'D');
}

/* A thread other than the main one, about to come back from a wait: waits for the other threads' turn. If the
 * main thread itself stays blocked (outside the shim's waits: it may wait for this thread) for 250 ms, it goes on. */
static void wait_turn(void) {
    if (!settling() || is_main_thread()) return;
    int64_t blocked_since = 0;
    while (__atomic_load_n(&main_turn, __ATOMIC_ACQUIRE)) {
        struct timespec t = {0, 10000000};
        futex(&main_turn, FUTEX_WAIT, 1, &t);
        if (!__atomic_load_n(&main_turn, __ATOMIC_ACQUIRE)) break;
        if (__atomic_load_n(&main_at_frame, __ATOMIC_ACQUIRE) || !main_thread_blocked()) blocked_since = 0;
        else if (!blocked_since) blocked_since = real_mono();
        else if (real_mono() - blocked_since > 250000000LL) return;
    }
    /* In the other threads' turn: one that wakes goes on once the others are idle, so that it sees all of what they
     * were handing it (every packet of a burst that one thread sends and another receives), not part of it. */
    pid_t self = (pid_t)syscall(SYS_gettid);
    mark_waking(self);
    int64_t start = real_mono();
    struct timespec gap = {0, 50000};
    for (int quiet = 0; quiet < 2;) {
        quiet = others_idle(0) ? quiet + 1 : 0;
        if (quiet < 2 && real_mono() - start > WAKE_MAX_NS) {
            __atomic_add_fetch(&shm->unsettled, 1, __ATOMIC_RELAXED);
            break;
        }
        if (quiet < 2) real_nanosleep(&gap, NULL);
    }
    mark_waking(0);
}

static void settle(void) {
    if (!settling() || !is_main_thread()) return;
    static int warned;
    set_main_turn(0);
    int64_t start = real_mono();
    struct timespec gap = ns_ts(SETTLE_GAP_NS);
    for (int quiet = 0; quiet < SETTLE_SCANS;) {
        quiet = others_idle(1) ? quiet + 1 : 0;
        if (real_mono() - start > SETTLE_MAX_NS) {
            __atomic_add_fetch(&shm->unsettled, 1, __ATOMIC_RELAXED);
            if (!warned++) {
                static const char msg[] = "azote clock shim: the game's threads did not settle\n";
                ssize_t w = write(2, msg, sizeof msg - 1);
                (void)w;
            }
            break;
        }
        if (quiet < SETTLE_SCANS) real_nanosleep(&gap, NULL);
    }
    set_main_turn(1);
}

/* Set while the game's main thread waits in pthread_join for another thread to end (see pthread_join below). */
static int main_joining;

/* Sleeps for d virtual nanoseconds (see the header). Returns 0. */
static int virtual_sleep(int64_t d) {
    __atomic_add_fetch(&shm->sleeps, 1, __ATOMIC_RELAXED);
    if (d <= 0) { sched_yield(); return 0; }
    if (is_main_thread()) {
        __atomic_add_fetch(&shm->vtime_ns, d, __ATOMIC_ACQ_REL);
#ifdef AZOTE_WINE
        wine_sync_server(); /* the server's timers and tick count catch up before the game goes on */
#endif
        if (settling()) {
            futex(&shm->grant, FUTEX_WAKE, 0x7fffffff, NULL); /* threads asleep in virtual time re-check it */
            settle();
        } else {
            sched_yield();
        }
        return 0;
    }
    int64_t target = vnow() + d;
    vwait_mark(target);
    struct timespec poll = {0, 2000000}; /* re-check at least every 2 ms of real time */
    while (vnow() < target && !__atomic_load_n(&main_joining, __ATOMIC_ACQUIRE)) {
        uint32_t g = load32(&shm->grant);
        if (vnow() >= target) break;
        futex(&shm->grant, FUTEX_WAIT, g, &poll);
    }
    vwait_mark(INT64_MAX);
    wait_turn();
    return 0;
}

static int real_time_now(void) { return !shm || (!load32(&shm->lockstep) && shm->warmup_mode != 2); }

int nanosleep(const struct timespec *req, struct timespec *rem) {
    resolve();
    if (real_time_now() || !req) return real_nanosleep(req, rem);
    if (req->tv_nsec < 0 || req->tv_nsec >= 1000000000L) { errno = EINVAL; return -1; }
    if (rem) rem->tv_sec = rem->tv_nsec = 0;
    return virtual_sleep(ts_ns(req));
}

int clock_nanosleep(clockid_t id, int flags, const struct timespec *req, struct timespec *rem) {
    resolve();
    static int (*real)(clockid_t, int, const struct timespec *, struct timespec *);
    if (!real) real = (int (*)(clockid_t, int, const struct timespec *, struct timespec *))dlsym(RTLD_NEXT, "clock_nanosleep");
    if (real_time_now() || !virtual_clock(id) || !req) return real(id, flags, req, rem);
    if (req->tv_nsec < 0 || req->tv_nsec >= 1000000000L) return EINVAL;
    int64_t d = ts_ns(req);
    if (flags & TIMER_ABSTIME) d -= virtual_value(id, vnow());
    if (rem && !(flags & TIMER_ABSTIME)) rem->tv_sec = rem->tv_nsec = 0;
    virtual_sleep(d);
    return 0;
}

int usleep(useconds_t us) {
    struct timespec t = ns_ts((int64_t)us * 1000);
    return nanosleep(&t, NULL);
}

unsigned int sleep(unsigned int s) {
    struct timespec t = {(time_t)s, 0};
    nanosleep(&t, NULL);
    return 0;
}

/* ---- joins. Virtual time moves only at frames, and the main thread presents none while it waits in pthread_join,
 * so a thread asleep in virtual time would never wake to end and the game would hang, typically on its way out
 * (SuperTux's OpenAL mixer, joined when the player quits through the pause menu). While the main thread joins,
 * the other threads' virtual sleeps return at once; before this, any such join hung. */
int pthread_join(pthread_t thread, void **result) {
    static int (*real)(pthread_t, void **);
    if (!real) real = (int (*)(pthread_t, void **))dlsym(RTLD_NEXT, "pthread_join");
    int mine = shm && is_main_thread();
    if (mine) {
        __atomic_store_n(&main_joining, 1, __ATOMIC_RELEASE);
        futex(&shm->grant, FUTEX_WAKE, 0x7fffffff, NULL); /* sleepers re-check now */
    }
    int r = real(thread, result);
    if (mine) __atomic_store_n(&main_joining, 0, __ATOMIC_RELEASE);
    return r;
}

/* ---- timed waits of the game's other threads (server, network, worker threads), with settling: their absolute
 * deadlines come from the virtual clocks, so they are deadlines in virtual time. Passed to the real call they lie
 * in the real past (the virtual clocks start behind the real ones) and every wait times out at once: a thread
 * that waits for work with a timeout spins. Instead the wait lasts until it is woken or virtual time reaches the
 * deadline, checked every millisecond of real time. The main thread's waits go to the real calls. */
#include <semaphore.h>
#define VWAIT_SLICE_NS 1000000LL

static int virtual_wait(void) { return settling() && !real_time_now() && !is_main_thread(); }

/* Virtual nanoseconds left until an absolute deadline on clock id (as the game read that clock). */
static int64_t virtual_left(clockid_t id, const struct timespec *abs) {
    return ts_ns(abs) - virtual_value(id, vnow());
}

/* A deadline whose clock the call does not name (pthread_cond_timedwait): wall-clock readings lie near the
 * epoch (years since 1970), monotonic ones near mono_ns (seconds). */
static clockid_t guess_clock(const struct timespec *abs) {
    return ts_ns(abs) >= shm->epoch_ns / 2 ? CLOCK_REALTIME : CLOCK_MONOTONIC;
}

static struct timespec real_slice(clockid_t id) {
    struct timespec t;
    real_clock_gettime(id, &t);
    return ns_ts(ts_ns(&t) + VWAIT_SLICE_NS);
}

static int sem_wait_virtual(sem_t *sem, clockid_t id, const struct timespec *abs) {
    static int (*real)(sem_t *, clockid_t, const struct timespec *);
    static int (*real_timed)(sem_t *, const struct timespec *);
    if (!real) real = (int (*)(sem_t *, clockid_t, const struct timespec *))dlsym(RTLD_NEXT, "sem_clockwait");
    if (!real_timed) real_timed = (int (*)(sem_t *, const struct timespec *))dlsym(RTLD_NEXT, "sem_timedwait");
    vwait_mark(vnow() + virtual_left(id, abs));
    int r;
    for (;;) {
        if ((r = sem_trywait(sem)) == 0) break;
        if (virtual_left(id, abs) <= 0) { errno = ETIMEDOUT; r = -1; break; }
        struct timespec t = real_slice(real ? CLOCK_MONOTONIC : CLOCK_REALTIME);
        r = real ? real(sem, CLOCK_MONOTONIC, &t) : real_timed(sem, &t);
        if (r == 0 || errno != ETIMEDOUT) break;
    }
    int saved = errno;
    vwait_mark(INT64_MAX);
    wait_turn();
    errno = saved;
    return r;
}

int sem_timedwait(sem_t *restrict sem, const struct timespec *restrict abs) {
    static int (*real)(sem_t *, const struct timespec *);
    if (!real) real = (int (*)(sem_t *, const struct timespec *))dlsym(RTLD_NEXT, "sem_timedwait");
    if (abs->tv_nsec < 0 || abs->tv_nsec >= 1000000000L || !virtual_wait()) return real(sem, abs);
    return sem_wait_virtual(sem, CLOCK_REALTIME, abs);
}

int sem_clockwait(sem_t *restrict sem, clockid_t id, const struct timespec *restrict abs) {
    static int (*real)(sem_t *, clockid_t, const struct timespec *);
    if (!real) real = (int (*)(sem_t *, clockid_t, const struct timespec *))dlsym(RTLD_NEXT, "sem_clockwait");
    if (!real) { errno = ENOSYS; return -1; }
    if (abs->tv_nsec < 0 || abs->tv_nsec >= 1000000000L || !virtual_clock(id) || !virtual_wait())
        return real(sem, id, abs);
    return sem_wait_virtual(sem, id, abs);
}

/* Untimed semaphore waits of other threads (work queues) only wait for their turn when they get the semaphore. */
int sem_wait(sem_t *sem) {
    static int (*real)(sem_t *);
    if (!real) real = (int (*)(sem_t *))dlsym(RTLD_NEXT, "sem_wait");
    int r = real(sem);
    if (shm && !is_main_thread()) {
        int saved = errno;
        wait_turn();
        errno = saved;
    }
    return r;
}

/* Condition variables: one real slice, then back to the caller (a spurious wake-up, which callers handle by
 * checking their predicate and waiting again) unless virtual time has reached the deadline. */
static int cond_wait_virtual(pthread_cond_t *c, pthread_mutex_t *m, clockid_t id, const struct timespec *abs) {
    static int (*real)(pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *);
    if (!real) real = (int (*)(pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *))dlsym(RTLD_NEXT, "pthread_cond_clockwait");
    int64_t left = virtual_left(id, abs);
    if (left <= 0) return ETIMEDOUT;
    vwait_mark(vnow() + left);
    struct timespec t = real_slice(CLOCK_MONOTONIC);
    int r = real(c, m, CLOCK_MONOTONIC, &t);
    vwait_mark(INT64_MAX);
    if (settling() && __atomic_load_n(&main_turn, __ATOMIC_ACQUIRE)) { /* wait for the turn without the mutex */
        pthread_mutex_unlock(m);
        wait_turn();
        pthread_mutex_lock(m);
    }
    if (r == ETIMEDOUT) return virtual_left(id, abs) <= 0 ? ETIMEDOUT : 0;
    return r;
}

int pthread_cond_timedwait(pthread_cond_t *restrict c, pthread_mutex_t *restrict m, const struct timespec *restrict abs) {
    static int (*real)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
    if (!real) real = (int (*)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *))dlvsym(RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
    if (!real) real = (int (*)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *))dlsym(RTLD_NEXT, "pthread_cond_timedwait");
    if (abs->tv_nsec < 0 || abs->tv_nsec >= 1000000000L || !virtual_wait() || !dlsym(RTLD_NEXT, "pthread_cond_clockwait"))
        return real(c, m, abs);
    return cond_wait_virtual(c, m, guess_clock(abs), abs);
}

int pthread_cond_clockwait(pthread_cond_t *restrict c, pthread_mutex_t *restrict m, clockid_t id, const struct timespec *restrict abs) {
    static int (*real)(pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *);
    if (!real) real = (int (*)(pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *))dlsym(RTLD_NEXT, "pthread_cond_clockwait");
    if (!real) return ENOSYS;
    if (abs->tv_nsec < 0 || abs->tv_nsec >= 1000000000L || !virtual_clock(id) || !virtual_wait())
        return real(c, m, id, abs);
    return cond_wait_virtual(c, m, id, abs);
}

/* ---- fixed entropy (AZOTE_FIXED_ENTROPY=1 in the game's environment): getrandom (the call and the raw system
 * call), getentropy read a fixed pseudo-random stream, so that what a game seeds from the kernel's entropy (Lua's
 * string-hash seed: the order in which mods see tables) is the same every run. */
#include <sys/random.h>
static int fixed_entropy = -1;
static uint64_t entropy_state = 0x9e3779b97f4a7c15ULL;
static pthread_mutex_t entropy_lock = PTHREAD_MUTEX_INITIALIZER;

static int entropy_fixed(void) {
    if (fixed_entropy < 0) {
        const char *e = getenv("AZOTE_FIXED_ENTROPY");
        fixed_entropy = e && *e && *e != '0';
    }
    return fixed_entropy;
}

static void entropy_fill(void *buf, size_t len) {
    unsigned char *p = (unsigned char *)buf;
    pthread_mutex_lock(&entropy_lock);
    for (size_t i = 0; i < len; i++) {
        entropy_state ^= entropy_state << 13; /* xorshift64 */
        entropy_state ^= entropy_state >> 7;
        entropy_state ^= entropy_state << 17;
        p[i] = (unsigned char)(entropy_state >> 24);
    }
    pthread_mutex_unlock(&entropy_lock);
}

ssize_t getrandom(void *buf, size_t len, unsigned int flags) {
    if (entropy_fixed()) { entropy_fill(buf, len); return (ssize_t)len; }
    static ssize_t (*real)(void *, size_t, unsigned int);
    if (!real) real = (ssize_t (*)(void *, size_t, unsigned int))dlsym(RTLD_NEXT, "getrandom");
    return real(buf, len, flags);
}

int getentropy(void *buf, size_t len) {
    if (entropy_fixed()) {
        if (len > 256) { errno = EIO; return -1; }
        entropy_fill(buf, len);
        return 0;
    }
    static int (*real)(void *, size_t);
    if (!real) real = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "getentropy");
    return real(buf, len);
}

long syscall(long number, ...) {
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_getrandom && entropy_fixed()) {
        entropy_fill((void *)a[0], (size_t)a[1]);
        return a[1];
    }
    static long (*real)(long, ...);
    if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* ---- private home: games that find their config through the password database (getpwuid) rather than
 * $HOME get the private home in AZOTE_HOME as the user's home directory too ---- */
#include <pwd.h>
static void private_home(struct passwd *p) {
    const char *home = getenv("AZOTE_HOME");
    if (p && home && *home && p->pw_uid == getuid()) p->pw_dir = (char *)home;
}

struct passwd *getpwuid(uid_t uid) {
    static struct passwd *(*real)(uid_t);
    if (!real) real = (struct passwd * (*)(uid_t)) dlsym(RTLD_NEXT, "getpwuid");
    struct passwd *p = real(uid);
    private_home(p);
    return p;
}

int getpwuid_r(uid_t uid, struct passwd *pwd, char *buf, size_t len, struct passwd **result) {
    static int (*real)(uid_t, struct passwd *, char *, size_t, struct passwd **);
    if (!real) real = (int (*)(uid_t, struct passwd *, char *, size_t, struct passwd **))dlsym(RTLD_NEXT, "getpwuid_r");
    int r = real(uid, pwd, buf, len, result);
    if (r == 0 && result) private_home(*result);
    return r;
}

/* ---- gamepad: the pad's state from the shared file, copied into the game at each frame boundary ------------- */
#define PAD_SDL 1u           /* pad_enabled: an SDL2 virtual game controller */
#define PAD_JS 2u            /* pad_enabled: a Linux joystick device (js API) */
#define PAD_ST_SDL 1u        /* pad_status: the SDL pad is attached and open */
#define PAD_ST_JS 2u         /* pad_status: the game opened the js device */
#define PAD_ST_SDL_FAILED 4u /* pad_status: SDL has no virtual joysticks (older than 2.24) or refused */

/* Bit i of pad_buttons is azote.gamepad.BUTTONS[i]. */
enum { B_BACK, B_DOWN, B_LEFT, B_RIGHT, B_UP, B_EAST, B_GUIDE, B_LSHOULDER, B_LTHUMB, B_LTRIGGER, B_NORTH,
       B_RSHOULDER, B_RTHUMB, B_RTRIGGER, B_SOUTH, B_START, B_WEST };

static int pad_flag(uint32_t bit) { return shm && (load32(&shm->pad_enabled) & bit); }
static void pad_status(uint32_t bit) { __atomic_or_fetch(&shm->pad_status, bit, __ATOMIC_ACQ_REL); }
static int16_t pad_axis(int i) { return __atomic_load_n(&shm->pad_axes[i], __ATOMIC_ACQUIRE); }

/* SDL2: SDL_VirtualJoystickDesc (SDL 2.24+, version 1) declared here, since the shim does not build against SDL.
 * Type game controller, 6 axes, 15 buttons and no hat: SDL gives such a joystick its own controller mapping, with
 * buttons in SDL_GameControllerButton order (A B X Y back guide start lstick rstick lshoulder rshoulder up down
 * left right) and axes in SDL_GameControllerAxis order (left x, left y, right x, right y, left/right trigger). */
typedef struct {
    uint16_t version, type, naxes, nbuttons, nhats, vendor_id, product_id, padding;
    uint32_t button_mask, axis_mask;
    const char *name;
    void *userdata;
    void (*Update)(void *);
    void (*SetPlayerIndex)(void *, int);
    int (*Rumble)(void *, uint16_t, uint16_t);
    int (*RumbleTriggers)(void *, uint16_t, uint16_t);
    int (*SetLED)(void *, uint8_t, uint8_t, uint8_t);
    int (*SendEffect)(void *, const void *, int);
} az_sdl_vjoy_desc;
#define AZ_SDL_INIT_JOYSTICK 0x200u
#define AZ_SDL_INIT_GAMECONTROLLER 0x2000u
#define AZ_PAD_NAME "Azote virtual gamepad"
static const uint8_t SDL_PAD_BUTTONS[15] = {B_SOUTH, B_EAST, B_WEST, B_NORTH, B_BACK, B_GUIDE, B_START, B_LTHUMB,
                                            B_RTHUMB, B_LSHOULDER, B_RSHOULDER, B_UP, B_DOWN, B_LEFT, B_RIGHT};
static void *sdl_pad; /* the SDL_Joystick the shim holds open (SDL counts the game's opens of it on top) */
static int (*sdl_set_axis)(void *, int, int16_t);
static int (*sdl_set_button)(void *, int, uint8_t);

static void sdl_pad_sync(void) {
    uint32_t b = load32(&shm->pad_buttons);
    for (int i = 0; i < 4; i++) sdl_set_axis(sdl_pad, i, pad_axis(i));
    for (int i = 4; i < 6; i++) { /* a trigger's raw axis rests at -32768; the controller mapping makes it 0..32767 */
        int32_t t = pad_axis(i) < 0 ? 0 : pad_axis(i);
        sdl_set_axis(sdl_pad, i, (int16_t)(t * 65535 / 32767 - 32768));
    }
    for (int i = 0; i < 15; i++) sdl_set_button(sdl_pad, i, (uint8_t)((b >> SDL_PAD_BUTTONS[i]) & 1));
}

static void sdl_pad_attach(void) {
    if (sdl_pad || !pad_flag(PAD_SDL)) return;
    int (*attach)(const az_sdl_vjoy_desc *) = (int (*)(const az_sdl_vjoy_desc *))dlsym(RTLD_NEXT, "SDL_JoystickAttachVirtualEx");
    void *(*open_joystick)(int) = (void *(*)(int))dlsym(RTLD_NEXT, "SDL_JoystickOpen");
    sdl_set_axis = (int (*)(void *, int, int16_t))dlsym(RTLD_NEXT, "SDL_JoystickSetVirtualAxis");
    sdl_set_button = (int (*)(void *, int, uint8_t))dlsym(RTLD_NEXT, "SDL_JoystickSetVirtualButton");
    if (!attach || !open_joystick || !sdl_set_axis || !sdl_set_button) { pad_status(PAD_ST_SDL_FAILED); return; }
    az_sdl_vjoy_desc d;
    memset(&d, 0, sizeof d);
    d.version = 1; /* SDL_VIRTUAL_JOYSTICK_DESC_VERSION */
    d.type = 1;    /* SDL_JOYSTICK_TYPE_GAMECONTROLLER */
    d.naxes = 6;
    d.nbuttons = 15;
    d.name = AZ_PAD_NAME;
    int index = attach(&d);
    void *joystick = index >= 0 ? open_joystick(index) : NULL;
    if (!joystick) { pad_status(PAD_ST_SDL_FAILED); return; }
    sdl_pad = joystick;
    pad_status(PAD_ST_SDL);
    sdl_pad_sync();
}

/* The game brings up SDL's joystick (or game controller) subsystem: attach the pad (and report it as the game's
 * SDL_Init would see a pad plugged in: a device-added event waits in the queue). */
static int sdl_init_with(const char *name, uint32_t flags) {
    int (*real)(uint32_t) = (int (*)(uint32_t))dlsym(RTLD_NEXT, name);
    if (!real) return -1; /* no SDL in this process: nobody should call this */
    int r = real(flags);
    if (r == 0 && (flags & (AZ_SDL_INIT_JOYSTICK | AZ_SDL_INIT_GAMECONTROLLER))) sdl_pad_attach();
    return r;
}
int SDL_Init(uint32_t flags) { return sdl_init_with("SDL_Init", flags); }
int SDL_InitSubSystem(uint32_t flags) { return sdl_init_with("SDL_InitSubSystem", flags); }

/* Quitting the joystick subsystem closes and frees every joystick: forget ours (an init later attaches anew). */
void SDL_QuitSubSystem(uint32_t flags) {
    void (*real)(uint32_t) = (void (*)(uint32_t))dlsym(RTLD_NEXT, "SDL_QuitSubSystem");
    if (real) real(flags);
    uint32_t (*was_init)(uint32_t) = (uint32_t (*)(uint32_t))dlsym(RTLD_NEXT, "SDL_WasInit");
    if (sdl_pad && (!was_init || !(was_init(AZ_SDL_INIT_JOYSTICK) & AZ_SDL_INIT_JOYSTICK))) sdl_pad = NULL;
}
void SDL_Quit(void) {
    void (*real)(void) = (void (*)(void))dlsym(RTLD_NEXT, "SDL_Quit");
    sdl_pad = NULL;
    if (real) real();
}

/* Linux joystick device (the js API, what SFML reads): a node that udev enumeration lists among the input
 * devices and that open() turns into one end of a socket pair; the shim writes struct js_event records into the
 * other end at each frame boundary (only what changed; JS_EVENT_INIT records of the whole state at open) and
 * answers the JSIOCG* ioctls. Layout: the Linux xpad driver's with triggers and d-pad as buttons (its
 * triggers_to_buttons and dpad_to_buttons options): axes X Y RX RY; 17 buttons, one per gamepad button. */
#define JS_NODE "/dev/input/js-azote0"
#define JS_SYSNAME "js-azote0"
#define JS_SYSPATH "/sys/devices/virtual/input/azote-pad/js-azote0"
#define JS_NAXES 4
#define JS_NBUTTONS 17
#define JS_MAX_OPEN 8
static const uint8_t JS_AXMAP[JS_NAXES] = {ABS_X, ABS_Y, ABS_RX, ABS_RY};
static const uint16_t JS_BTNMAP[JS_NBUTTONS] = {
    BTN_A, BTN_B, BTN_X, BTN_Y, BTN_TL, BTN_TR, BTN_TL2, BTN_TR2, BTN_SELECT, BTN_START, BTN_MODE, BTN_THUMBL,
    BTN_THUMBR, BTN_TRIGGER_HAPPY3, BTN_TRIGGER_HAPPY4, BTN_TRIGGER_HAPPY1, BTN_TRIGGER_HAPPY2};
static const uint8_t JS_BUTTONS[JS_NBUTTONS] = {B_SOUTH, B_EAST, B_WEST, B_NORTH, B_LSHOULDER, B_RSHOULDER,
                                                B_LTRIGGER, B_RTRIGGER, B_BACK, B_START, B_GUIDE, B_LTHUMB,
                                                B_RTHUMB, B_UP, B_DOWN, B_LEFT, B_RIGHT};

struct js_conn {
    int game_fd, our_fd;
    ino_t ino; /* of the game's end: an fd number the game closed and reused is not ours */
    int16_t axes[JS_NAXES];
    uint8_t buttons[JS_NBUTTONS];
};
static struct js_conn js_conns[JS_MAX_OPEN];
static int js_count;
static int js_opened; /* the js node was opened at least once: only then ioctl looks at fds */
static pthread_mutex_t js_lock = PTHREAD_MUTEX_INITIALIZER;

/* The node udev lists, and the first numbered node for games that open /dev/input/js0.. themselves (Irrlicht). */
static int js_path(const char *path) {
    return path && pad_flag(PAD_JS) && (strcmp(path, JS_NODE) == 0 || strcmp(path, "/dev/input/js0") == 0);
}

/* 1 if sent, 0 if the game's end is full (retried next frame), -1 if it is closed. */
static int js_send(struct js_conn *c, uint8_t type, uint8_t number, int16_t value) {
    struct js_event e;
    e.time = (uint32_t)(vnow() / 1000000);
    e.value = value;
    e.type = type;
    e.number = number;
    ssize_t n = send(c->our_fd, &e, sizeof e, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == (ssize_t)sizeof e) return 1;
    return (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) ? 0 : -1;
}

/* Sends what changed (everything, flagged JS_EVENT_INIT, when init). 0, or -1 if the game closed its end. */
static int js_sync_conn(struct js_conn *c, int init) {
    uint32_t b = load32(&shm->pad_buttons);
    uint8_t flag = init ? JS_EVENT_INIT : 0;
    for (int i = 0; i < JS_NAXES; i++) {
        int16_t v = pad_axis(i);
        if (v < -32767) v = -32767;
        if (!init && v == c->axes[i]) continue;
        int r = js_send(c, JS_EVENT_AXIS | flag, (uint8_t)i, v);
        if (r < 0) return -1;
        if (r > 0) c->axes[i] = v;
    }
    for (int i = 0; i < JS_NBUTTONS; i++) {
        uint8_t v = (uint8_t)((b >> JS_BUTTONS[i]) & 1);
        if (!init && v == c->buttons[i]) continue;
        int r = js_send(c, JS_EVENT_BUTTON | flag, (uint8_t)i, v);
        if (r < 0) return -1;
        if (r > 0) c->buttons[i] = v;
    }
    return 0;
}

/* Drops entry i (its game end was closed). Called with js_lock held. */
static void js_drop(int i) {
    close(js_conns[i].our_fd);
    js_conns[i] = js_conns[--js_count];
}

static int js_peer_closed(struct js_conn *c) {
    char x;
    return recv(c->our_fd, &x, 1, MSG_DONTWAIT | MSG_PEEK) == 0;
}

static int js_open(int flags) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return -1;
    if (!(flags & O_CLOEXEC)) fcntl(sv[0], F_SETFD, 0);
    if (flags & O_NONBLOCK) fcntl(sv[0], F_SETFL, O_NONBLOCK);
    struct stat st;
    fstat(sv[0], &st);
    pthread_mutex_lock(&js_lock);
    for (int i = js_count - 1; i >= 0; i--)
        if (js_peer_closed(&js_conns[i])) js_drop(i);
    if (js_count == JS_MAX_OPEN) {
        pthread_mutex_unlock(&js_lock);
        close(sv[0]);
        close(sv[1]);
        errno = EBUSY;
        return -1;
    }
    struct js_conn *c = &js_conns[js_count++];
    memset(c, 0, sizeof *c);
    c->game_fd = sv[0];
    c->our_fd = sv[1];
    c->ino = st.st_ino;
    js_sync_conn(c, 1);
    js_opened = 1;
    pthread_mutex_unlock(&js_lock);
    pad_status(PAD_ST_JS);
    return sv[0];
}

static void js_sync(void) {
    pthread_mutex_lock(&js_lock);
    for (int i = js_count - 1; i >= 0; i--)
        if (js_peer_closed(&js_conns[i]) || js_sync_conn(&js_conns[i], 0) < 0) js_drop(i);
    pthread_mutex_unlock(&js_lock);
}

static int js_is_ours(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
    pthread_mutex_lock(&js_lock);
    int found = 0;
    for (int i = 0; i < js_count; i++) found |= js_conns[i].game_fd == fd && js_conns[i].ino == st.st_ino;
    pthread_mutex_unlock(&js_lock);
    return found;
}

/* The JSIOC* requests of linux/joystick.h, by number (their sizes vary across kernel headers). */
static int js_ioctl(unsigned long request, void *arg) {
    unsigned size = _IOC_SIZE(request);
    switch (_IOC_NR(request)) {
    case 0x01: *(uint32_t *)arg = JS_VERSION; return 0;             /* JSIOCGVERSION */
    case 0x11: *(uint8_t *)arg = JS_NAXES; return 0;                /* JSIOCGAXES */
    case 0x12: *(uint8_t *)arg = JS_NBUTTONS; return 0;             /* JSIOCGBUTTONS */
    case 0x13: {                                                    /* JSIOCGNAME(len) */
        size_t n = strlen(AZ_PAD_NAME) + 1;
        if (n > size) n = size;
        memcpy(arg, AZ_PAD_NAME, n);
        return (int)n;
    }
    case 0x32: /* JSIOCGAXMAP */
        memset(arg, 0, size);
        memcpy(arg, JS_AXMAP, size < JS_NAXES ? size : JS_NAXES);
        return 0;
    case 0x34: /* JSIOCGBTNMAP */
        memset(arg, 0, size);
        memcpy(arg, JS_BTNMAP, size < sizeof JS_BTNMAP ? size : sizeof JS_BTNMAP);
        return 0;
    case 0x22: memset(arg, 0, size); return 0;                      /* JSIOCGCORR: no correction */
    case 0x21: case 0x31: case 0x33: return 0;                      /* JSIOCS*: accepted, ignored */
    default: errno = EINVAL; return -1;
    }
}

int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (js_opened && _IOC_TYPE(request) == 'j' && js_is_ours(fd)) return js_ioctl(request, arg);
    static int (*real)(int, unsigned long, ...);
    if (!real) real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    return real(fd, request, arg);
}

#ifndef __OPEN_NEEDS_MODE
#define __OPEN_NEEDS_MODE(flags) (((flags) & O_CREAT) != 0 || ((flags) & O_TMPFILE) == O_TMPFILE)
#endif
#define OPEN_HOOK(name)                                                                      \
    int name(const char *path, int flags, ...) {                                             \
        int mode = 0;                                                                        \
        if (__OPEN_NEEDS_MODE(flags)) {                                                      \
            va_list ap;                                                                      \
            va_start(ap, flags);                                                             \
            mode = va_arg(ap, int);                                                          \
            va_end(ap);                                                                      \
        }                                                                                    \
        if (js_path(path)) return js_open(flags);                                            \
        static int (*real)(const char *, int, ...);                                          \
        if (!real) real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #name);          \
        return real(path, flags, mode);                                                      \
    }
OPEN_HOOK(open)
OPEN_HOOK(open64)

/* libudev, as the game links it (SFML does; SDL dlopens its own and does not see this): enumerations list the
 * js node first; the node's device answers the few queries a joystick scan makes. Handles of the fake entry and
 * device are addresses in the shim that libudev never sees. */
struct udev;
struct udev_device;
struct udev_enumerate;
struct udev_list_entry;
static char fake_entry_tag, fake_device_tag;
#define FAKE_ENTRY ((struct udev_list_entry *)&fake_entry_tag)
#define FAKE_DEVICE ((struct udev_device *)&fake_device_tag)
static struct udev_list_entry *fake_entry_next; /* the real list after ours (one enumeration at a time) */
#define UDEV_REAL(ret, name, params) static ret(*real) params; if (!real) real = (ret(*) params)dlsym(RTLD_NEXT, #name)

struct udev_list_entry *udev_enumerate_get_list_entry(struct udev_enumerate *e) {
    UDEV_REAL(struct udev_list_entry *, udev_enumerate_get_list_entry, (struct udev_enumerate *));
    struct udev_list_entry *first = real(e);
    if (!pad_flag(PAD_JS)) return first;
    fake_entry_next = first;
    return FAKE_ENTRY;
}
struct udev_list_entry *udev_list_entry_get_next(struct udev_list_entry *entry) {
    UDEV_REAL(struct udev_list_entry *, udev_list_entry_get_next, (struct udev_list_entry *));
    return entry == FAKE_ENTRY ? fake_entry_next : real(entry);
}
const char *udev_list_entry_get_name(struct udev_list_entry *entry) {
    UDEV_REAL(const char *, udev_list_entry_get_name, (struct udev_list_entry *));
    return entry == FAKE_ENTRY ? JS_SYSPATH : real(entry);
}
const char *udev_list_entry_get_value(struct udev_list_entry *entry) {
    UDEV_REAL(const char *, udev_list_entry_get_value, (struct udev_list_entry *));
    return entry == FAKE_ENTRY ? NULL : real(entry);
}
struct udev_device *udev_device_new_from_syspath(struct udev *udev, const char *syspath) {
    UDEV_REAL(struct udev_device *, udev_device_new_from_syspath, (struct udev *, const char *));
    if (syspath && pad_flag(PAD_JS) && strcmp(syspath, JS_SYSPATH) == 0) return FAKE_DEVICE;
    return real(udev, syspath);
}
struct udev_device *udev_device_ref(struct udev_device *d) {
    UDEV_REAL(struct udev_device *, udev_device_ref, (struct udev_device *));
    return d == FAKE_DEVICE ? d : real(d);
}
struct udev_device *udev_device_unref(struct udev_device *d) {
    UDEV_REAL(struct udev_device *, udev_device_unref, (struct udev_device *));
    return d == FAKE_DEVICE ? NULL : real(d);
}
#define UDEV_STRING(name, fake_value)                                                        \
    const char *name(struct udev_device *d) {                                                \
        UDEV_REAL(const char *, name, (struct udev_device *));                               \
        return d == FAKE_DEVICE ? fake_value : real(d);                                      \
    }
UDEV_STRING(udev_device_get_devnode, JS_NODE)
UDEV_STRING(udev_device_get_syspath, JS_SYSPATH)
UDEV_STRING(udev_device_get_devpath, JS_SYSPATH + 4)
UDEV_STRING(udev_device_get_sysname, JS_SYSNAME)
UDEV_STRING(udev_device_get_sysnum, "0")
UDEV_STRING(udev_device_get_subsystem, "input")
UDEV_STRING(udev_device_get_devtype, NULL)
UDEV_STRING(udev_device_get_driver, NULL)
UDEV_STRING(udev_device_get_action, NULL)
dev_t udev_device_get_devnum(struct udev_device *d) {
    UDEV_REAL(dev_t, udev_device_get_devnum, (struct udev_device *));
    return d == FAKE_DEVICE ? 0 : real(d);
}
int udev_device_get_is_initialized(struct udev_device *d) {
    UDEV_REAL(int, udev_device_get_is_initialized, (struct udev_device *));
    return d == FAKE_DEVICE ? 1 : real(d);
}
struct udev *udev_device_get_udev(struct udev_device *d) {
    UDEV_REAL(struct udev *, udev_device_get_udev, (struct udev_device *));
    return d == FAKE_DEVICE ? NULL : real(d);
}
struct udev_list_entry *udev_device_get_properties_list_entry(struct udev_device *d) {
    UDEV_REAL(struct udev_list_entry *, udev_device_get_properties_list_entry, (struct udev_device *));
    return d == FAKE_DEVICE ? NULL : real(d);
}
const char *udev_device_get_property_value(struct udev_device *d, const char *key) {
    UDEV_REAL(const char *, udev_device_get_property_value, (struct udev_device *, const char *));
    if (d != FAKE_DEVICE) return real(d, key);
    if (!key) return NULL;
    if (!strcmp(key, "ID_INPUT") || !strcmp(key, "ID_INPUT_JOYSTICK")) return "1";
    if (!strcmp(key, "ID_VENDOR_ID")) return "045e"; /* an Xbox 360 pad's ids */
    if (!strcmp(key, "ID_MODEL_ID")) return "028e";
    return NULL;
}
const char *udev_device_get_sysattr_value(struct udev_device *d, const char *name) {
    UDEV_REAL(const char *, udev_device_get_sysattr_value, (struct udev_device *, const char *));
    return d == FAKE_DEVICE ? NULL : real(d, name);
}
struct udev_device *udev_device_get_parent(struct udev_device *d) {
    UDEV_REAL(struct udev_device *, udev_device_get_parent, (struct udev_device *));
    return d == FAKE_DEVICE ? NULL : real(d);
}
struct udev_device *udev_device_get_parent_with_subsystem_devtype(struct udev_device *d, const char *subsystem,
                                                                  const char *devtype) {
    UDEV_REAL(struct udev_device *, udev_device_get_parent_with_subsystem_devtype,
              (struct udev_device *, const char *, const char *));
    return d == FAKE_DEVICE ? NULL : real(d, subsystem, devtype);
}

/* At each frame boundary (after the game wakes in its buffer swap, before it polls its input). */
static void pad_sync(void) {
    if (!load32(&shm->pad_enabled)) return;
    if (sdl_pad) sdl_pad_sync();
    if (js_opened) js_sync();
    __atomic_store_n(&shm->pad_synced, load32(&shm->frames), __ATOMIC_RELEASE);
}

/* ---- frames ---------------------------------------------------------------------------------------------- */
typedef void (*gl_fn)(void);
typedef void (*glReadPixels_fn)(int, int, int, int, unsigned, unsigned, void *);
typedef void (*glGetIntegerv_fn)(unsigned, int *);
typedef void (*glPixelStorei_fn)(unsigned, int);
typedef void (*glBind_fn)(unsigned, unsigned);
typedef void (*glReadBuffer_fn)(unsigned);
typedef unsigned (*glGetError_fn)(void);

#define GL_RGBA 0x1908
#define GL_UNSIGNED_BYTE 0x1401
#define GL_PACK_ALIGNMENT 0x0D05
#define GL_PACK_ROW_LENGTH 0x0D02
#define GL_PACK_SKIP_ROWS 0x0D03
#define GL_PACK_SKIP_PIXELS 0x0D04
#define GL_READ_BUFFER 0x0C02
#define GL_BACK 0x0405
#define GL_READ_FRAMEBUFFER 0x8CA8
#define GL_READ_FRAMEBUFFER_BINDING 0x8CAA
#define GL_PIXEL_PACK_BUFFER 0x88EB
#define GL_PIXEL_PACK_BUFFER_BINDING 0x88ED

static gl_fn gl_proc(const char *name) {
    void *f = dlsym(RTLD_DEFAULT, name);
    if (f) return (gl_fn)f;
    static void *(*gpa)(const char *);
    static void *(*egpa)(const char *);
    static int looked;
    if (!looked) {
        looked = 1;
        void *lib = dlopen("libGL.so.1", RTLD_NOW | RTLD_NOLOAD);
        if (!lib) lib = dlopen("libGL.so.1", RTLD_NOW);
        if (lib) gpa = (void *(*)(const char *))dlsym(lib, "glXGetProcAddressARB");
        void *egl = dlopen("libEGL.so.1", RTLD_NOW | RTLD_NOLOAD);
        if (egl) egpa = (void *(*)(const char *))dlsym(egl, "eglGetProcAddress");
    }
    if (gpa && (f = gpa(name))) return (gl_fn)f;
    if (egpa && (f = egpa(name))) return (gl_fn)f;
    return NULL;
}

static void capture(void) {
    uint32_t w = load32(&shm->capture_w), h = load32(&shm->capture_h);
    if (!w || !h) return;
    static glReadPixels_fn read_pixels;
    static glGetIntegerv_fn get_int;
    static glPixelStorei_fn store;
    static glBind_fn bind_fb, bind_buf;
    static glReadBuffer_fn read_buffer;
    static glGetError_fn get_error;
    if (!read_pixels) {
        read_pixels = (glReadPixels_fn)gl_proc("glReadPixels");
        get_int = (glGetIntegerv_fn)gl_proc("glGetIntegerv");
        store = (glPixelStorei_fn)gl_proc("glPixelStorei");
        bind_fb = (glBind_fn)gl_proc("glBindFramebuffer");
        bind_buf = (glBind_fn)gl_proc("glBindBuffer");
        read_buffer = (glReadBuffer_fn)gl_proc("glReadBuffer");
        get_error = (glGetError_fn)gl_proc("glGetError");
        if (!read_pixels || !get_int || !store) { shm->capture_fail = 1; read_pixels = NULL; return; }
    }
    /* Read the default framebuffer's back buffer with tight packing, then put back what the game had set. */
    int fb = 0, pbo = 0, rb = GL_BACK, align = 4, row = 0, skip_r = 0, skip_p = 0;
    if (bind_fb) get_int(GL_READ_FRAMEBUFFER_BINDING, &fb);
    if (bind_buf) get_int(GL_PIXEL_PACK_BUFFER_BINDING, &pbo);
    if (read_buffer) get_int(GL_READ_BUFFER, &rb);
    get_int(GL_PACK_ALIGNMENT, &align);
    get_int(GL_PACK_ROW_LENGTH, &row);
    get_int(GL_PACK_SKIP_ROWS, &skip_r);
    get_int(GL_PACK_SKIP_PIXELS, &skip_p);
    if (get_error) while (get_error() != 0) {} /* the queries may fail on old contexts: not the game's errors */
    if (bind_fb && fb) bind_fb(GL_READ_FRAMEBUFFER, 0);
    if (bind_buf && pbo) bind_buf(GL_PIXEL_PACK_BUFFER, 0);
    if (read_buffer && rb != GL_BACK) read_buffer(GL_BACK);
    store(GL_PACK_ALIGNMENT, 1);
    store(GL_PACK_ROW_LENGTH, 0);
    store(GL_PACK_SKIP_ROWS, 0);
    store(GL_PACK_SKIP_PIXELS, 0);
    read_pixels(0, 0, (int)w, (int)h, GL_RGBA, GL_UNSIGNED_BYTE, (char *)shm + AZ_PIXELS_OFFSET);
    store(GL_PACK_ALIGNMENT, align);
    store(GL_PACK_ROW_LENGTH, row);
    store(GL_PACK_SKIP_ROWS, skip_r);
    store(GL_PACK_SKIP_PIXELS, skip_p);
    if (read_buffer && rb != GL_BACK) read_buffer((unsigned)rb);
    if (bind_buf && pbo) bind_buf(GL_PIXEL_PACK_BUFFER, (unsigned)pbo);
    if (bind_fb && fb) bind_fb(GL_READ_FRAMEBUFFER, (unsigned)fb);
    if (get_error) while (get_error() != 0) {}
}

/* Called around every presented frame: capture before, count and (in lockstep) wait after. */
static void before_present(void) {
    uint32_t next = load32(&shm->frames) + 1;
    if (load32(&shm->lockstep) == 1 || next >= shm->warmup_frames) {
        capture();
        __atomic_store_n(&shm->captured, next, __ATOMIC_RELEASE);
    }
    /* the other threads' turn: what the frame set going (packets sent, meshes asked for) is done before the
     * controller sees the frame, and nothing runs while it reads the game's state */
    settle();
}

static void after_present(void) {
    uint32_t n = __atomic_add_fetch(&shm->frames, 1, __ATOMIC_ACQ_REL);
    shm->pid = (uint32_t)getpid();
    uint32_t phase = load32(&shm->lockstep);
    if (phase != 1) {
        if (phase == 0) {
            /* Frame-time start-up begins at a fixed virtual time (start_ns, later only if loading took longer
             * than that), so what the game does with "time since start" does not depend on the loading time. */
            int64_t real = real_mono() - real_start_ns;
            if (shm->warmup_mode == 2) __atomic_add_fetch(&shm->vtime_ns, shm->frame_ns, __ATOMIC_ACQ_REL);
            else store64(&shm->vtime_ns, shm->warmup_mode == 1 && real < shm->start_ns ? shm->start_ns : real);
            store64(&shm->wall0_ns, load64(&shm->vtime_ns));
        }
        else __atomic_add_fetch(&shm->vtime_ns, shm->frame_ns, __ATOMIC_ACQ_REL);
        if (n < shm->warmup_frames) {
            /* frame-time start-up: real time only until the first frame (window set-up may wait on the clock) */
            if (phase == 0 && shm->warmup_mode != 0) __atomic_store_n(&shm->lockstep, 2, __ATOMIC_RELEASE);
            futex(&shm->frames, FUTEX_WAKE, 0x7fffffff, NULL);
            if (settling()) {
                futex(&shm->grant, FUTEX_WAKE, 0x7fffffff, NULL);
                settle();
            }
#ifdef AZOTE_WINE
            wine_sync_server();
#endif
            pad_sync();
            return;
        }
        /* with settling, lockstep starts at the next whole second of virtual time: how far the threads got in a
         * virtual start-up varies by a few main-thread clock reads (10 us each), which would offset every later
         * deadline of theirs against the frames */
        if (settling()) store64(&shm->vtime_ns, (load64(&shm->vtime_ns) / 1000000000LL + 1) * 1000000000LL);
        store64(&shm->t0_ns, load64(&shm->vtime_ns));
        shm->lockstep_frame = n;
        __atomic_store_n(&shm->lockstep, 1, __ATOMIC_RELEASE);
    }
    futex(&shm->frames, FUTEX_WAKE, 0x7fffffff, NULL);
    /* Block until the controller releases frame n; re-check now and then in case of a missed wake-up. */
    struct timespec poll = {0, 50000000};
    __atomic_store_n(&main_at_frame, 1, __ATOMIC_RELEASE);
#ifdef AZOTE_WINE
    wine_at_frame(1);
#endif
    for (;;) {
        uint32_t g = load32(&shm->grant);
        if ((int32_t)(g - n) >= 0) break;
        futex(&shm->grant, FUTEX_WAIT, g, &poll);
    }
    __atomic_store_n(&main_at_frame, 0, __ATOMIC_RELEASE);
#ifdef AZOTE_WINE
    wine_at_frame(0);
#endif
    /* k * 1e12 / fps_milli: exact for rates like 60 (600 frames are exactly 10 s, not 10 s + 200 ns) */
    __int128 k = (__int128)(n - shm->lockstep_frame + 1);
    int64_t t = load64(&shm->t0_ns) + (int64_t)(k * 1000000000000LL / shm->fps_milli);
    if (load64(&shm->vtime_ns) < t) store64(&shm->vtime_ns, t);
    futex(&shm->grant, FUTEX_WAKE, 0x7fffffff, NULL); /* sleeping threads re-check virtual time */
    settle();
#ifdef AZOTE_WINE
    wine_sync_server();
#endif
    pad_sync(); /* the pad the controller wrote before granting this frame */
}

#define HOOK(ret, name, params, args)                                                        \
    ret name params {                                                                        \
        static ret (*real) params;                                                           \
        if (!real) real = (ret (*) params)dlsym(RTLD_NEXT, #name);                           \
        if (!shm || in_hook) return real args;                                               \
        in_hook = 1;                                                                         \
        before_present();                                                                    \
        ret r = real args;                                                                   \
        after_present();                                                                     \
        in_hook = 0;                                                                         \
        return r;                                                                            \
    }

static void sdl_swap_void(void *window) {
    static void (*real)(void *);
    if (!real) real = (void (*)(void *))dlsym(RTLD_NEXT, "SDL_GL_SwapWindow");
    if (!shm || in_hook) { real(window); return; }
    in_hook = 1;
    before_present();
    real(window);
    after_present();
    in_hook = 0;
}

void SDL_GL_SwapWindow(void *window) { sdl_swap_void(window); }

void glXSwapBuffers(void *dpy, unsigned long drawable) {
    static void (*real)(void *, unsigned long);
    if (!real) real = (void (*)(void *, unsigned long))dlsym(RTLD_NEXT, "glXSwapBuffers");
    if (!shm || in_hook) { real(dpy, drawable); return; }
    in_hook = 1;
    before_present();
    real(dpy, drawable);
    after_present();
    in_hook = 0;
}

HOOK(unsigned, eglSwapBuffers, (void *dpy, void *surface), (dpy, surface))

#ifdef AZOTE_WINE
/* ---- Wine: this file built a second time with -DAZOTE_WINE (setup.py: _clockshim_wine*.so), which
 * azote.envs.native.wine preloads into a Wine session. Every process of the session loads it (Wine hands the
 * environment on): the Windows program, Wine's own programs (services.exe, explorer.exe, winedevice.exe...) and
 * wineserver. What differs from the Linux build:
 * - Roles. The game is the process whose command line contains AZOTE_WINE_EXE (the .exe's file name); only its
 *   main thread (the Windows program's first thread: Wine runs it on the process's main thread) moves virtual time
 *   and presents frames. Other processes read the virtual clocks, and their sleeps wait for virtual time.
 *   Real-time start-up modes share one origin (the first process's load time), kept in the Wine area.
 * - Frames. winex11.drv finds glXSwapBuffers through glXGetProcAddressARB, itself looked up with dlsym on its own
 *   handle to libGL, which never sees a preloaded library: dlsym hands out the shim's glXGetProcAddressARB and
 *   glXSwapBuffers for those names (dlsym(RTLD_NEXT) keeps its meaning: the next object after the caller's).
 *   Direct3D 8-11 through wined3d presents through the same call.
 * - Clocks. Wine's QueryPerformanceCounter, NtQuerySystemTime and timeouts read clock_gettime/gettimeofday (the
 *   shim's); GetTickCount and timeGetTime read the tick count that wineserver writes into the shared user data
 *   page when its main loop reads the time. Sleep (NtDelayExecution) waits in select() without descriptors: a
 *   virtual sleep here.
 * - The server keeps up with virtual time. Whenever the game moves virtual time (a frame, a sleep) it bumps
 *   `epoch`, pokes wineserver (an abstract datagram socket) and waits until the server's main loop has run once
 *   with the new time (`server_ack`): expired timers have fired and the tick count is current before the game
 *   goes on. wineserver waits (epoll_wait) on virtual time; when the game's main thread is blocked reading a pipe
 *   (a server wait: WaitForSingleObject on a waitable timer, MsgWaitForMultipleObjects with a timeout...) and the
 *   server has nothing to do, virtual time jumps to the server's next deadline (`jumps`).
 * - Lifetime. Wine's programs leave the game's process group (setsid), and wineserver daemonizes. When the shared
 *   file is gone (the controller closed the session, or its warden removed it after the owner died), wineserver
 *   kills every process whose environment names that file, removes its server directory and exits. */
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/un.h>
#include <link.h>

struct az_wine {             /* at WINE_AREA in the shared file (zero when the controller creates it) */
    int64_t real_start_ns;   /* 256: real CLOCK_MONOTONIC when the session's first process loaded the shim */
    uint32_t game_pid;       /* 264 */
    uint32_t server_pid;     /* 268 */
    uint32_t epoch;          /* 272: bumped by the game when it moved virtual time */
    uint32_t server_ack;     /* 276: the epoch whose time wineserver's loop has seen (futex word) */
    uint32_t game_at_frame;  /* 280: 1 while the game's main thread waits for its grant */
    uint32_t game_in_read;   /* 284: 1 while the game's main thread reads a pipe */
    uint32_t read_seq;       /* 288: pipe reads begun by the game's main thread */
    uint32_t jumps;          /* 292: times wineserver moved virtual time to its next deadline */
    uint32_t syncs;          /* 296: times the game waited for the server to catch up */
};
#define WINE_AREA 256
static struct az_wine *wine_area(void) { return (struct az_wine *)((char *)shm + WINE_AREA); }

static void wine_lower(char *s) { for (; *s; s++) if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a'); }

static void wine_init(void) {
    struct az_wine *w = wine_area();
    int64_t first = 0;
    if (!__atomic_compare_exchange_n(&w->real_start_ns, &first, real_start_ns, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        real_start_ns = first;
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        const char *base = strrchr(exe, '/');
        if (!strncmp(base ? base + 1 : exe, "wineserver", 10)) {
            wine_role = WINE_SERVER;
            __atomic_store_n(&w->server_pid, (uint32_t)getpid(), __ATOMIC_RELEASE);
            return;
        }
    }
    const char *want = getenv("AZOTE_WINE_EXE");
    if (!want || !*want) return;
    /* the program is the first argument that is not one of Wine's loaders (wine, wine64, wine64-preloader) */
    static char cmd[8192], name[512];
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t len = read(fd, cmd, sizeof cmd - 1);
    close(fd);
    if (len <= 0) return;
    cmd[len] = 0;
    snprintf(name, sizeof name, "%s", want);
    wine_lower(name);
    for (char *arg = cmd; arg < cmd + len; arg += strlen(arg) + 1) {
        for (char *c = arg; *c; c++) if (*c == '\\') *c = '/';
        wine_lower(arg);
        const char *base = strrchr(arg, '/');
        base = base ? base + 1 : arg;
        if (!strncmp(base, "wine", 4) && !strstr(base, ".exe")) continue;
        if (!strcmp(base, name)) {
            wine_role = WINE_GAME;
            __atomic_store_n(&w->game_pid, (uint32_t)getpid(), __ATOMIC_RELEASE);
        }
        return;
    }
}

static socklen_t wine_sock_addr(struct sockaddr_un *a) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    const char *p = getenv("AZOTE_SHM");
    snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "azote-wine:%s", p ? p : "");
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1));
}

static void wine_at_frame(uint32_t v) {
    if (wine_role == WINE_GAME) __atomic_store_n(&wine_area()->game_at_frame, v, __ATOMIC_RELEASE);
}

/* The game moved virtual time: wait (at most 2 s of real time) until wineserver's loop has run with it. */
static void wine_sync_server(void) {
    if (!shm || wine_role != WINE_GAME || !is_main_thread()) return;
    struct az_wine *w = wine_area();
    pid_t server = (pid_t)load32(&w->server_pid);
    if (!server || kill(server, 0) != 0) return;
    uint32_t e = __atomic_add_fetch(&w->epoch, 1, __ATOMIC_ACQ_REL);
    static int sock = -1;
    static struct sockaddr_un addr;
    static socklen_t addr_len;
    if (sock < 0) {
        sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        addr_len = wine_sock_addr(&addr);
    }
    if (sock >= 0) sendto(sock, "t", 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
    int64_t start = real_mono();
    for (;;) {
        uint32_t a = load32(&w->server_ack);
        if ((int32_t)(a - e) >= 0) break;
        if (real_mono() - start > 2000000000LL) break; /* the server is stuck: go on rather than hang */
        struct timespec t = {0, 1000000};
        futex(&w->server_ack, FUTEX_WAIT, a, &t);
    }
    __atomic_add_fetch(&w->syncs, 1, __ATOMIC_RELAXED);
}

/* ---- dlsym: the names winex11.drv looks up in its own libGL handle get the shim's functions -------------- */
typedef void (*az_proc)(void);
static void *(*dlsym_real)(void *, const char *);
static az_proc (*gpa_real)(const unsigned char *);

static void *az_dlsym(void *handle, const char *name) {
    if (!dlsym_real) {
        dlsym_real = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
        if (!dlsym_real) dlsym_real = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
    }
    return dlsym_real(handle, name); /* the caller glibc sees is the shim */
}

static az_proc az_gpa(const unsigned char *name) {
    if (name && !strcmp((const char *)name, "glXSwapBuffers")) return (az_proc)glXSwapBuffers;
    if (!gpa_real) gpa_real = (az_proc (*)(const unsigned char *))az_dlsym(RTLD_NEXT, "glXGetProcAddressARB");
    return gpa_real ? gpa_real(name) : NULL;
}
az_proc glXGetProcAddressARB(const unsigned char *name) { return az_gpa(name); }
az_proc glXGetProcAddress(const unsigned char *name) { return az_gpa(name); }

/* dlsym(RTLD_NEXT) for a caller outside the shim: the first object loaded after the caller's that defines it. */
static void *az_dlsym_next(const void *caller, const char *name) {
    Dl_info info;
    struct link_map *lm = NULL, *self = NULL;
    dladdr1((void *)az_dlsym_next, &info, (void **)&self, RTLD_DL_LINKMAP);
    if (!dladdr1(caller, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm || lm == self) return az_dlsym(RTLD_NEXT, name);
    for (struct link_map *l = lm->l_next; l; l = l->l_next) {
        if (!l->l_name || !*l->l_name) continue;
        void *h = dlopen(l->l_name, RTLD_LAZY | RTLD_NOLOAD);
        if (!h) continue;
        void *sym = az_dlsym(h, name);
        dlclose(h);
        struct link_map *owner = NULL;
        if (sym && dladdr1(sym, &info, (void **)&owner, RTLD_DL_LINKMAP) && owner == l) return sym;
    }
    return NULL;
}

void *dlsym(void *handle, const char *name) {
    if (handle == RTLD_NEXT) return az_dlsym_next(__builtin_return_address(0), name);
    void *sym = az_dlsym(handle, name);
    if (sym && shm && handle != RTLD_DEFAULT) {
        if (!strcmp(name, "glXSwapBuffers")) return (void *)glXSwapBuffers;
        if (!strcmp(name, "glXGetProcAddressARB") || !strcmp(name, "glXGetProcAddress")) {
            if (!gpa_real) gpa_real = (az_proc (*)(const unsigned char *))sym;
            return (void *)glXGetProcAddressARB;
        }
    }
    return sym;
}

/* ---- Sleep: NtDelayExecution waits in select() without descriptors ---------------------------------------- */
int select(int nfds, fd_set *restrict r, fd_set *restrict wr, fd_set *restrict e, struct timeval *restrict tv) {
    static int (*real)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
    if (!real) real = (int (*)(int, fd_set *, fd_set *, fd_set *, struct timeval *))dlsym(RTLD_NEXT, "select");
    if (!shm || nfds != 0 || r || wr || e || !tv || wine_role == WINE_SERVER || real_time_now())
        return real(nfds, r, wr, e, tv);
    virtual_sleep((int64_t)tv->tv_sec * 1000000000LL + (int64_t)tv->tv_usec * 1000);
    tv->tv_sec = tv->tv_usec = 0;
    return 0;
}

/* ---- the game's main thread blocked on the server: reads of a pipe (server replies and wait wake-ups) ------ */
ssize_t read(int fd, void *buf, size_t n) {
    static ssize_t (*real)(int, void *, size_t);
    if (!real) real = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    struct stat st;
    if (!shm || wine_role != WINE_GAME || syscall(SYS_gettid) != getpid() || fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode))
        return real(fd, buf, n);
    struct az_wine *w = wine_area();
    __atomic_add_fetch(&w->read_seq, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&w->game_in_read, 1, __ATOMIC_RELEASE);
    ssize_t r = real(fd, buf, n);
    int saved = errno;
    __atomic_store_n(&w->game_in_read, 0, __ATOMIC_RELEASE);
    errno = saved;
    return r;
}

/* ---- wineserver ------------------------------------------------------------------------------------------- */
static char thread_state(pid_t pid, pid_t tid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] ? p[2] : 0;
}

/* The game's main thread sleeps reading a pipe that only this server writes, since `seq` (its read count). */
static int game_parked(uint32_t *seq) {
    struct az_wine *w = wine_area();
    pid_t game = (pid_t)load32(&w->game_pid);
    if (!game || load32(&w->game_at_frame) || !load32(&w->game_in_read)) return 0;
    uint32_t s = load32(&w->read_seq);
    if (thread_state(game, game) != 'S' || !load32(&w->game_in_read) || load32(&w->read_seq) != s) return 0;
    if (*seq != s) { *seq = s; return 0; } /* seen in the same read on two looks, a slice apart */
    return 1;
}

static void wine_server_exit(void) {
    const char *path = getenv("AZOTE_SHM");
    char want[600], buf[65536], proc[64];
    int want_len = snprintf(want, sizeof want, "AZOTE_SHM=%s", path ? path : "");
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 1 || pid == getpid()) continue;
        snprintf(proc, sizeof proc, "/proc/%d/environ", pid);
        int fd = open(proc, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        for (ssize_t i = 0; n > 0 && i + want_len <= n; i += (ssize_t)strlen(buf + i) + 1) {
            buf[n] = 0;
            if (!memcmp(buf + i, want, (size_t)want_len) && buf[i + want_len] == 0) { kill(pid, SIGKILL); break; }
        }
    }
    if (d) closedir(d);
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) && strstr(cwd, "/server-")) { /* wineserver works in its server directory */
        DIR *s = opendir(".");
        while (s && (e = readdir(s))) if (e->d_name[0] != '.') unlink(e->d_name);
        if (s) closedir(s);
        if (chdir("/") == 0) rmdir(cwd);
        char *slash = strrchr(cwd, '/');
        if (slash) { *slash = 0; rmdir(cwd); } /* /tmp/.wine-<uid>, if nothing else is in it */
    }
    _exit(0);
}

static int server_wait(int (*real)(int, struct epoll_event *, int, int), int epfd, struct epoll_event *ev, int max,
                       int timeout) {
    static int sock = -1;
    static uint32_t seen_epoch;
    struct az_wine *w = wine_area();
    const char *path = getenv("AZOTE_SHM");
    if (sock < 0) {
        struct sockaddr_un addr;
        socklen_t len = wine_sock_addr(&addr);
        sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (sock >= 0 && bind(sock, (struct sockaddr *)&addr, len) != 0) { close(sock); sock = -2; }
    }
    if (load32(&w->server_pid) != (uint32_t)getpid()) /* wineserver forks to go to the background */
        __atomic_store_n(&w->server_pid, (uint32_t)getpid(), __ATOMIC_RELEASE);
    uint32_t e = load32(&w->epoch);
    if (e != seen_epoch) { seen_epoch = e; return 0; } /* time moved since the loop last read it: run it again */
    __atomic_store_n(&w->server_ack, e, __ATOMIC_RELEASE);
    futex(&w->server_ack, FUTEX_WAKE, 0x7fffffff, NULL);
    int64_t until = timeout < 0 ? -1 : vnow() + (int64_t)timeout * 1000000LL;
    uint32_t seq = 0xffffffffu;
    int64_t checked = real_mono();
    for (;;) {
        struct pollfd p[2] = {{epfd, POLLIN, 0}, {sock, POLLIN, 0}};
        int r = poll(p, sock >= 0 ? 2 : 1, until < 0 ? 250 : 1);
        if (r > 0 && sock >= 0 && p[1].revents) {
            char drain[64];
            while (recv(sock, drain, sizeof drain, MSG_DONTWAIT) > 0) {}
        }
        e = load32(&w->epoch);
        if (e != seen_epoch) { seen_epoch = e; return 0; }
        if (r > 0 && p[0].revents) return real(epfd, ev, max, 0);
        if (real_mono() - checked > 200000000LL) {
            checked = real_mono();
            if (!path || access(path, F_OK) != 0) wine_server_exit(); /* the session is over */
        }
        if (until >= 0 && vnow() >= until) return 0;
        if (until >= 0 && !real_time_now() && game_parked(&seq)) {
            int64_t now = load64(&shm->vtime_ns), to = now + (until - vnow());
            if (to > now) store64(&shm->vtime_ns, to);
            __atomic_add_fetch(&w->jumps, 1, __ATOMIC_RELAXED);
            return 0;
        }
    }
}

int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout) {
    static int (*real)(int, struct epoll_event *, int, int);
    if (!real) real = (int (*)(int, struct epoll_event *, int, int))dlsym(RTLD_NEXT, "epoll_wait");
    if (!shm || wine_role != WINE_SERVER || timeout == 0) return real(epfd, ev, max, timeout);
    return server_wait(real, epfd, ev, max, timeout);
}
#endif
