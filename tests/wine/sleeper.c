/* A game that sleeps: each frame it waits 3 ms with Sleep, 4 ms on a waitable timer, then paces itself to 60 frames
 * per second with Sleep(1) until the next frame's deadline on QueryPerformanceCounter. It moves the player by the
 * time that passed (a variable timestep), so any error in the sleeps would show in its position. */
#include "common.h"

static double wait_timer(HANDLE timer, double s) {
    double t0 = seconds();
    LARGE_INTEGER due;
    due.QuadPart = -(LONGLONG)(s * 1e7); /* relative, in 100 ns */
    SetWaitableTimer(timer, &due, 0, NULL, NULL, FALSE);
    WaitForSingleObject(timer, INFINITE);
    return seconds() - t0;
}

int main(int argc, char **argv) {
    open_window("azote-sleeper", argc, argv);
    HANDLE timer = CreateWaitableTimerA(NULL, TRUE, NULL);
    const double period = 1.0 / 60.0, speed = 90.0;
    double x = width / 2.0, y = height / 2.0, last = seconds(), next = last + period, slept = 0.0;
    while (pump()) {
        double t0 = seconds();
        Sleep(3);
        slept += seconds() - t0;
        slept += wait_timer(timer, 0.004);
        while (seconds() < next) Sleep(1);
        next += period;
        if (next < seconds()) next = seconds() + period; /* fell behind: no catching up */
        double now = seconds(), dt = now - last;
        last = now;
        x += ((keys[VK_RIGHT] ? 1 : 0) - (keys[VK_LEFT] ? 1 : 0)) * speed * dt;
        y += ((keys[VK_DOWN] ? 1 : 0) - (keys[VK_UP] ? 1 : 0)) * speed * dt;
        readout[R_X] = (unsigned)(x * 100.0);
        readout[R_Y] = (unsigned)(y * 100.0);
        readout[R_SLEPT] = (unsigned)(slept * 1e6);
        scene(now, 20, 80, 40);
        rect((int)x - 8, (int)y - 8, 16, 16, 250, 120, 40);
        present();
    }
    return 0;
}
