/* A fixed-timestep game on QueryPerformanceCounter: the world updates at 120 Hz from the time the counter says
 * passed (at most 0.25 s per frame), rendering once per loop. Arrow keys move the player (a square). */
#include "common.h"

int main(int argc, char **argv) {
    open_window("azote-fixed", argc, argv);
    const double dt = 1.0 / 120.0, speed = 120.0; /* pixels per second */
    double x = width / 2.0, y = height / 2.0, acc = 0.0, last = seconds(), sim = 0.0;
    while (pump()) {
        double now = seconds(), frame = now - last;
        last = now;
        acc += frame > 0.25 ? 0.25 : frame;
        while (acc >= dt) {
            x += ((keys[VK_RIGHT] ? 1 : 0) - (keys[VK_LEFT] ? 1 : 0)) * speed * dt;
            y += ((keys[VK_DOWN] ? 1 : 0) - (keys[VK_UP] ? 1 : 0)) * speed * dt;
            acc -= dt;
            sim += dt;
            readout[R_UPDATES]++;
        }
        readout[R_X] = (unsigned)(x * 100.0);
        readout[R_Y] = (unsigned)(y * 100.0);
        scene(sim, 30, 60, 90);
        rect((int)x - 8, (int)y - 8, 16, 16, 240, 200, 40);
        present();
    }
    return 0;
}
