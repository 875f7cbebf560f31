/* Shared by Azote's Windows test programs (the .c files here): a Win32 window with an OpenGL context, the program's
 * clocks, and a readout of its state drawn into the frame's top-left corner for the tests to read back.
 *
 * Usage: prog.exe [width height]. The window's client area is width x height (default 320 x 240).
 * Readout: row 0 (top 4 pixel rows) holds READOUT_SLOTS unsigned 32-bit values; value i is drawn as 4 blocks of
 * 4x4 pixels starting at x = 16 * i, one byte per block (least significant first), the byte in R, G and B. */
#ifndef AZOTE_WINE_COMMON_H
#define AZOTE_WINE_COMMON_H
#include <windows.h>
#include <mmsystem.h>
#include <GL/gl.h>
#include <stdlib.h>

#define READOUT_SLOTS 12
enum { R_FRAMES, R_QPC_US, R_TICK_MS, R_TIME_MS, R_UPDATES, R_X, R_Y, R_PAD, R_SLEPT, R_EXTRA };

static HWND win;
static HDC dc;
static int width = 320, height = 240, quit;
static unsigned readout[READOUT_SLOTS];
static LARGE_INTEGER qpc_freq, qpc_start;
static DWORD tick_start, time_start;
static BYTE keys[256];

static LRESULT CALLBACK window_proc(HWND w, UINT msg, WPARAM wp, LPARAM lp) {
    switch (msg) {
    case WM_CLOSE: case WM_DESTROY: quit = 1; PostQuitMessage(0); return 0;
    case WM_KEYDOWN: keys[wp & 255] = 1; return 0;
    case WM_KEYUP: keys[wp & 255] = 0; return 0;
    }
    return DefWindowProcA(w, msg, wp, lp);
}

static __attribute__((unused)) void open_window(const char *title, int argc, char **argv) {
    if (argc >= 3) { width = atoi(argv[1]); height = atoi(argv[2]); }
    if (width < 64 || height < 64) { width = 320; height = 240; }
    WNDCLASSA wc = {0};
    wc.style = CS_OWNDC;
    wc.lpfnWndProc = window_proc;
    wc.hInstance = GetModuleHandleA(NULL);
    wc.lpszClassName = title;
    wc.hCursor = LoadCursor(NULL, IDC_ARROW);
    RegisterClassA(&wc);
    RECT r = {0, 0, width, height};
    AdjustWindowRect(&r, WS_POPUP, FALSE);
    win = CreateWindowA(title, title, WS_POPUP | WS_VISIBLE, 0, 0, r.right - r.left, r.bottom - r.top, NULL, NULL,
                        wc.hInstance, NULL);
    dc = GetDC(win);
    PIXELFORMATDESCRIPTOR pfd = {0};
    pfd.nSize = sizeof pfd;
    pfd.nVersion = 1;
    pfd.dwFlags = PFD_DRAW_TO_WINDOW | PFD_SUPPORT_OPENGL | PFD_DOUBLEBUFFER;
    pfd.iPixelType = PFD_TYPE_RGBA;
    pfd.cColorBits = 24;
    pfd.cDepthBits = 16;
    SetPixelFormat(dc, ChoosePixelFormat(dc, &pfd), &pfd);
    wglMakeCurrent(dc, wglCreateContext(dc));
    ShowWindow(win, SW_SHOW);
    SetForegroundWindow(win);
    SetFocus(win);
    QueryPerformanceFrequency(&qpc_freq);
    QueryPerformanceCounter(&qpc_start);
    tick_start = GetTickCount();
    time_start = timeGetTime();
}

/* Seconds of the program's performance counter since open_window. */
static double seconds(void) {
    LARGE_INTEGER now;
    QueryPerformanceCounter(&now);
    return (double)(now.QuadPart - qpc_start.QuadPart) / (double)qpc_freq.QuadPart;
}

/* Handles the window's messages; 0 once the window was closed. */
static int pump(void) {
    MSG m;
    while (PeekMessageA(&m, NULL, 0, 0, PM_REMOVE)) {
        TranslateMessage(&m);
        DispatchMessageA(&m);
    }
    return !quit;
}

/* A rectangle in window coordinates (origin top-left), with exact 8-bit colours. */
static __attribute__((unused)) void rect(int x, int y, int w, int h, int r, int g, int b) {
    glEnable(GL_SCISSOR_TEST);
    glScissor(x, height - y - h, w, h);
    glClearColor(r / 255.0f, g / 255.0f, b / 255.0f, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    glDisable(GL_SCISSOR_TEST);
}

/* Fills the clock slots, draws the readout and presents the frame. */
static __attribute__((unused)) void present(void) {
    LARGE_INTEGER now;
    QueryPerformanceCounter(&now);
    readout[R_FRAMES]++;
    readout[R_QPC_US] = (unsigned)((now.QuadPart - qpc_start.QuadPart) * 1000000 / qpc_freq.QuadPart);
    readout[R_TICK_MS] = GetTickCount() - tick_start;
    readout[R_TIME_MS] = timeGetTime() - time_start;
    rect(0, 0, 16 * READOUT_SLOTS, 4, 0, 0, 0);
    for (int i = 0; i < READOUT_SLOTS; i++)
        for (int k = 0; k < 4; k++) {
            int v = (readout[i] >> (8 * k)) & 255;
            rect(16 * i + 4 * k, 0, 4, 4, v, v, v);
        }
    SwapBuffers(dc);
}

/* The background and a sweeping bar that shows the given time (seconds), so that every frame differs. */
static __attribute__((unused)) void scene(double t, int r, int g, int b) {
    glViewport(0, 0, width, height);
    rect(0, 0, width, height, r, g, b);
    int period_ms = 2000, ms = (int)(t * 1000.0) % period_ms;
    rect(ms * (width - 8) / period_ms, height - 24, 8, 16, 250, 250, 250);
}
#endif
