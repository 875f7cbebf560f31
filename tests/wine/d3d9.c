/* Direct3D 9 (wined3d on OpenGL under Wine): clears to a colour that cycles with QueryPerformanceCounter's time and
 * draws the readout with per-rectangle clears; each Present is one frame. */
#include "common.h"
#include <d3d9.h>

static IDirect3DDevice9 *dev;

static void d3d_rect(int x, int y, int w, int h, int r, int g, int b) {
    D3DRECT rc = {x, y, x + w, y + h};
    IDirect3DDevice9_Clear(dev, 1, &rc, D3DCLEAR_TARGET, D3DCOLOR_XRGB(r, g, b), 1.0f, 0);
}

int main(int argc, char **argv) {
    if (argc >= 3) { width = atoi(argv[1]); height = atoi(argv[2]); }
    WNDCLASSA wc = {0};
    wc.lpfnWndProc = window_proc;
    wc.hInstance = GetModuleHandleA(NULL);
    wc.lpszClassName = "azote-d3d9";
    RegisterClassA(&wc);
    win = CreateWindowA("azote-d3d9", "azote-d3d9", WS_POPUP | WS_VISIBLE, 0, 0, width, height, NULL, NULL,
                        wc.hInstance, NULL);
    IDirect3D9 *d3d = Direct3DCreate9(D3D_SDK_VERSION);
    D3DPRESENT_PARAMETERS pp = {0};
    pp.Windowed = TRUE;
    pp.SwapEffect = D3DSWAPEFFECT_DISCARD;
    pp.BackBufferFormat = D3DFMT_X8R8G8B8;
    pp.BackBufferWidth = width;
    pp.BackBufferHeight = height;
    pp.hDeviceWindow = win;
    pp.PresentationInterval = D3DPRESENT_INTERVAL_IMMEDIATE;
    if (!d3d || FAILED(IDirect3D9_CreateDevice(d3d, D3DADAPTER_DEFAULT, D3DDEVTYPE_HAL, win,
                                               D3DCREATE_SOFTWARE_VERTEXPROCESSING, &pp, &dev)))
        return 1;
    QueryPerformanceFrequency(&qpc_freq);
    QueryPerformanceCounter(&qpc_start);
    while (pump()) {
        double t = seconds();
        IDirect3DDevice9_BeginScene(dev);
        d3d_rect(0, 0, width, height, (int)(t * 60) % 256, 80, 120);
        readout[R_FRAMES]++;
        readout[R_QPC_US] = (unsigned)(t * 1e6 + 0.5);
        for (int i = 0; i < READOUT_SLOTS; i++)
            for (int k = 0; k < 4; k++) {
                int v = (readout[i] >> (8 * k)) & 255;
                d3d_rect(16 * i + 4 * k, 0, 4, 4, v, v, v);
            }
        IDirect3DDevice9_EndScene(dev);
        IDirect3DDevice9_Present(dev, NULL, NULL, NULL, NULL);
    }
    return 0;
}
