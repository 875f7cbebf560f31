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
 * Without AZOTE_SHM in the environment every call goes straight to the real function.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define AZ_MAGIC 0x4c435a41u /* "AZCL" */
#define AZ_VERSION 1u
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
};

static struct az_shm *shm;
static int64_t real_start_ns; /* real CLOCK_MONOTONIC when the shim loaded */
static __thread int in_hook;

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
}

static int is_main_thread(void) { return syscall(SYS_gettid) == getpid(); }

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
        if (shm->warmup_mode == 2 && !load32(&shm->lockstep)) __atomic_add_fetch(&shm->vtime_ns, 10000, __ATOMIC_ACQ_REL);
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

/* Sleeps for d virtual nanoseconds (see the header). Returns 0. */
static int virtual_sleep(int64_t d) {
    __atomic_add_fetch(&shm->sleeps, 1, __ATOMIC_RELAXED);
    if (d <= 0) { sched_yield(); return 0; }
    if (is_main_thread()) {
        __atomic_add_fetch(&shm->vtime_ns, d, __ATOMIC_ACQ_REL);
        sched_yield();
        return 0;
    }
    int64_t target = vnow() + d;
    struct timespec poll = {0, 2000000}; /* re-check at least every 2 ms of real time */
    while (vnow() < target) {
        uint32_t g = load32(&shm->grant);
        if (vnow() >= target) break;
        futex(&shm->grant, FUTEX_WAIT, g, &poll);
    }
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
            return;
        }
        store64(&shm->t0_ns, load64(&shm->vtime_ns));
        shm->lockstep_frame = n;
        __atomic_store_n(&shm->lockstep, 1, __ATOMIC_RELEASE);
    }
    futex(&shm->frames, FUTEX_WAKE, 0x7fffffff, NULL);
    /* Block until the controller releases frame n; re-check now and then in case of a missed wake-up. */
    struct timespec poll = {0, 50000000};
    for (;;) {
        uint32_t g = load32(&shm->grant);
        if ((int32_t)(g - n) >= 0) break;
        futex(&shm->grant, FUTEX_WAIT, g, &poll);
    }
    /* k * 1e12 / fps_milli: exact for rates like 60 (600 frames are exactly 10 s, not 10 s + 200 ns) */
    __int128 k = (__int128)(n - shm->lockstep_frame + 1);
    int64_t t = load64(&shm->t0_ns) + (int64_t)(k * 1000000000000LL / shm->fps_milli);
    if (load64(&shm->vtime_ns) < t) store64(&shm->vtime_ns, t);
    futex(&shm->grant, FUTEX_WAKE, 0x7fffffff, NULL); /* sleeping threads re-check virtual time */
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
