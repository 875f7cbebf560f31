/* A game played with an Xbox controller through XInput: the left stick moves the player at a speed in proportion
 * to its deflection (fixed 60 Hz timestep on QueryPerformanceCounter), A turns it green. */
#include "common.h"
#include <xinput.h>

int main(int argc, char **argv) {
    open_window("azote-pad", argc, argv);
    const double dt = 1.0 / 60.0, speed = 60.0; /* pixels per second at full deflection */
    double x = width / 2.0, y = height / 2.0, acc = 0.0, last = seconds(), sim = 0.0;
    XINPUT_STATE s;
    while (pump()) {
        double now = seconds(), frame = now - last;
        last = now;
        acc += frame > 0.25 ? 0.25 : frame;
        ZeroMemory(&s, sizeof s);
        DWORD r = XInputGetState(0, &s);
        readout[R_PAD] = (r == ERROR_SUCCESS ? 1u : 0u) | (unsigned)s.Gamepad.wButtons << 8;
        while (acc >= dt) {
            if (r == ERROR_SUCCESS) {
                x += s.Gamepad.sThumbLX / 32767.0 * speed * dt;
                y -= s.Gamepad.sThumbLY / 32767.0 * speed * dt;
            }
            acc -= dt;
            sim += dt;
            readout[R_UPDATES]++;
        }
        readout[R_X] = (unsigned)(x * 100.0);
        readout[R_Y] = (unsigned)(y * 100.0);
        scene(sim, 60, 30, 60);
        int green = s.Gamepad.wButtons & XINPUT_GAMEPAD_A;
        rect((int)x - 8, (int)y - 8, 16, 16, green ? 40 : 240, green ? 240 : 60, 40);
        present();
    }
    return 0;
}
