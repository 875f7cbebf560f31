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
        )
    ]
)
