/* Azote's XInput for Windows games under Wine: a DLL (cross-compiled with mingw-w64 by azote.envs.native.wine and
 * installed into the private prefix as xinput1_4.dll, xinput1_3.dll, xinput1_2.dll, xinput1_1.dll and
 * xinput9_1_0.dll, with a native DLL override) that reads the gamepad from the clock shim's shared file: controller
 * 0 is the unified gamepad, the others are unplugged. The controller writes the pad while the game waits for its
 * next frame, so what step t sets is what the game reads during frame t+1, as with the SDL and js pads. The file is
 * named by AZOTE_SHM (a Unix path, reached through Wine's Z: drive); layout: struct az_shm in clockshim.c. */
#include <windows.h>
#include <xinput.h>

#define PAD_XINPUT 8u /* pad_enabled / pad_status bit */
#define OFF_PAD_ENABLED 144
#define OFF_PAD_BUTTONS 148
#define OFF_PAD_AXES 152
#define OFF_PAD_STATUS 164

/* Bit i of pad_buttons is azote.gamepad.BUTTONS[i]. */
enum { B_BACK, B_DOWN, B_LEFT, B_RIGHT, B_UP, B_EAST, B_GUIDE, B_LSHOULDER, B_LTHUMB, B_LTRIGGER, B_NORTH,
       B_RSHOULDER, B_RTHUMB, B_RTRIGGER, B_SOUTH, B_START, B_WEST };
static const struct { int bit; WORD xinput; } BUTTON_MAP[] = {
    {B_UP, XINPUT_GAMEPAD_DPAD_UP}, {B_DOWN, XINPUT_GAMEPAD_DPAD_DOWN}, {B_LEFT, XINPUT_GAMEPAD_DPAD_LEFT},
    {B_RIGHT, XINPUT_GAMEPAD_DPAD_RIGHT}, {B_START, XINPUT_GAMEPAD_START}, {B_BACK, XINPUT_GAMEPAD_BACK},
    {B_LTHUMB, XINPUT_GAMEPAD_LEFT_THUMB}, {B_RTHUMB, XINPUT_GAMEPAD_RIGHT_THUMB},
    {B_LSHOULDER, XINPUT_GAMEPAD_LEFT_SHOULDER}, {B_RSHOULDER, XINPUT_GAMEPAD_RIGHT_SHOULDER},
    {B_GUIDE, 0x0400}, {B_SOUTH, XINPUT_GAMEPAD_A}, {B_EAST, XINPUT_GAMEPAD_B}, {B_WEST, XINPUT_GAMEPAD_X},
    {B_NORTH, XINPUT_GAMEPAD_Y},
};

static volatile unsigned char *shared; /* the mapped file, NULL when there is none */
static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
static XINPUT_GAMEPAD last;
static DWORD packet;
static CRITICAL_SECTION lock;

static BOOL CALLBACK open_shared(PINIT_ONCE o, void *arg, void **ctx) {
    (void)o; (void)arg; (void)ctx;
    InitializeCriticalSection(&lock);
    char unix_path[1024], path[1100];
    DWORD n = GetEnvironmentVariableA("AZOTE_SHM", unix_path, sizeof unix_path);
    if (!n || n >= sizeof unix_path) return TRUE;
    lstrcpyA(path, "Z:");
    lstrcatA(path, unix_path);
    for (char *c = path; *c; c++) if (*c == '/') *c = '\\';
    HANDLE f = CreateFileA(path, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                           NULL, OPEN_EXISTING, 0, NULL);
    if (f == INVALID_HANDLE_VALUE) return TRUE;
    HANDLE m = CreateFileMappingA(f, NULL, PAGE_READWRITE, 0, 4096, NULL);
    CloseHandle(f);
    if (!m) return TRUE;
    shared = (volatile unsigned char *)MapViewOfFile(m, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, 4096);
    CloseHandle(m);
    return TRUE;
}

static int pad_on(void) {
    InitOnceExecuteOnce(&once, open_shared, NULL, NULL);
    if (!shared || !(*(volatile DWORD *)(shared + OFF_PAD_ENABLED) & PAD_XINPUT)) return 0;
    InterlockedOr((volatile LONG *)(shared + OFF_PAD_STATUS), PAD_XINPUT); /* the game reads the pad */
    return 1;
}

static void read_pad(XINPUT_GAMEPAD *g) {
    DWORD b = *(volatile DWORD *)(shared + OFF_PAD_BUTTONS);
    volatile SHORT *axes = (volatile SHORT *)(shared + OFF_PAD_AXES);
    ZeroMemory(g, sizeof *g);
    for (unsigned i = 0; i < sizeof BUTTON_MAP / sizeof BUTTON_MAP[0]; i++)
        if (b & (1u << BUTTON_MAP[i].bit)) g->wButtons |= BUTTON_MAP[i].xinput;
    g->sThumbLX = axes[0];
    g->sThumbLY = (SHORT)(axes[1] == -32768 ? 32767 : -axes[1]); /* XInput's y points up, the gamepad's down */
    g->sThumbRX = axes[2];
    g->sThumbRY = (SHORT)(axes[3] == -32768 ? 32767 : -axes[3]);
    g->bLeftTrigger = (BYTE)(axes[4] > 0 ? axes[4] * 255 / 32767 : 0);
    g->bRightTrigger = (BYTE)(axes[5] > 0 ? axes[5] * 255 / 32767 : 0);
    if (b & (1u << B_LTRIGGER)) g->bLeftTrigger = 255;
    if (b & (1u << B_RTRIGGER)) g->bRightTrigger = 255;
}

static DWORD get_state(DWORD user, XINPUT_STATE *state) {
    if (!state) return ERROR_BAD_ARGUMENTS;
    if (user != 0 || !pad_on()) return ERROR_DEVICE_NOT_CONNECTED;
    XINPUT_GAMEPAD g;
    read_pad(&g);
    EnterCriticalSection(&lock);
    if (memcmp(&g, &last, sizeof g)) { last = g; packet++; } /* the packet number changes with the state */
    state->dwPacketNumber = packet;
    state->Gamepad = g;
    LeaveCriticalSection(&lock);
    return ERROR_SUCCESS;
}

DWORD WINAPI XInputGetState(DWORD user, XINPUT_STATE *state) {
    DWORD r = get_state(user, state);
    if (r == ERROR_SUCCESS) state->Gamepad.wButtons &= (WORD)~0x0400; /* the guide button: XInputGetStateEx only */
    return r;
}
DWORD WINAPI XInputGetStateEx(DWORD user, XINPUT_STATE *state) { return get_state(user, state); }

DWORD WINAPI XInputSetState(DWORD user, XINPUT_VIBRATION *v) {
    (void)v;
    return user == 0 && pad_on() ? ERROR_SUCCESS : ERROR_DEVICE_NOT_CONNECTED;
}

DWORD WINAPI XInputGetCapabilities(DWORD user, DWORD flags, XINPUT_CAPABILITIES *caps) {
    (void)flags;
    if (!caps) return ERROR_BAD_ARGUMENTS;
    if (user != 0 || !pad_on()) return ERROR_DEVICE_NOT_CONNECTED;
    ZeroMemory(caps, sizeof *caps);
    caps->Type = XINPUT_DEVTYPE_GAMEPAD;
    caps->SubType = XINPUT_DEVSUBTYPE_GAMEPAD;
    caps->Gamepad.wButtons = 0xf3ff;
    caps->Gamepad.bLeftTrigger = caps->Gamepad.bRightTrigger = 255;
    caps->Gamepad.sThumbLX = caps->Gamepad.sThumbLY = caps->Gamepad.sThumbRX = caps->Gamepad.sThumbRY = (SHORT)0xffc0;
    caps->Vibration.wLeftMotorSpeed = caps->Vibration.wRightMotorSpeed = 0xffff;
    return ERROR_SUCCESS;
}

void WINAPI XInputEnable(BOOL enable) { (void)enable; }

DWORD WINAPI XInputGetBatteryInformation(DWORD user, BYTE type, XINPUT_BATTERY_INFORMATION *info) {
    (void)type;
    if (!info) return ERROR_BAD_ARGUMENTS;
    if (user != 0 || !pad_on()) return ERROR_DEVICE_NOT_CONNECTED;
    info->BatteryType = BATTERY_TYPE_WIRED;
    info->BatteryLevel = BATTERY_LEVEL_FULL;
    return ERROR_SUCCESS;
}

DWORD WINAPI XInputGetKeystroke(DWORD user, DWORD reserved, XINPUT_KEYSTROKE *k) {
    (void)reserved; (void)k;
    if (user != 0 && user != XUSER_INDEX_ANY) return ERROR_DEVICE_NOT_CONNECTED;
    return pad_on() ? ERROR_EMPTY : ERROR_DEVICE_NOT_CONNECTED;
}

DWORD WINAPI XInputGetDSoundAudioDeviceGuids(DWORD user, GUID *render, GUID *capture) {
    if (user != 0 || !pad_on()) return ERROR_DEVICE_NOT_CONNECTED;
    if (render) ZeroMemory(render, sizeof *render);
    if (capture) ZeroMemory(capture, sizeof *capture);
    return ERROR_SUCCESS;
}

DWORD WINAPI XInputGetAudioDeviceIds(DWORD user, LPWSTR render, UINT *rlen, LPWSTR capture, UINT *clen) {
    (void)render; (void)capture;
    if (user != 0 || !pad_on()) return ERROR_DEVICE_NOT_CONNECTED;
    if (rlen) *rlen = 0;
    if (clen) *clen = 0;
    return ERROR_SUCCESS;
}
