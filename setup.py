"""Build step for the native-games clock shim (everything else is in pyproject.toml).

The shim is a plain C shared library that games load with LD_PRELOAD (azote.envs.native), not a Python
extension; building it as an Extension makes `pip install` (editable or not) compile it, so no compiler is
needed at run time.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "azote.envs.native._clockshim",
            sources=["src/azote/envs/native/shim/clockshim.c"],
            libraries=["dl"],
            extra_compile_args=["-O2", "-fvisibility=default"],
        ),
        # The same shim for Windows games under Wine (azote.envs.native.wine): the AZOTE_WINE parts of the source
        # (dlsym, select, read, epoll_wait for wineserver) exist only in this build, so Linux games never load them.
        Extension(
            "azote.envs.native._clockshim_wine",
            sources=["src/azote/envs/native/shim/clockshim.c"],
            define_macros=[("AZOTE_WINE", "1")],
            libraries=["dl"],
            extra_compile_args=["-O2", "-fvisibility=default"],
        ),
    ]
)
