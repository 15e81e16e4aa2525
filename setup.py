"""Build the compiled data plane.

Every ``fastpptp/*.pyx`` becomes an extension module.  Build knobs come from the
environment so CI and benchmarks can flip them without editing code:

  FASTPPTP_ANNOTATE=1   write Cython's annotated HTML next to each .pyx
  FASTPPTP_DEBUG=1      -O0 -g, bounds checks on
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("FASTPPTP_DEBUG") == "1"
cflags = ["-O0", "-g"] if debug else ["-O3", "-fno-strict-aliasing"]
cflags += ["-D_GNU_SOURCE", "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION"]

extensions = [
    Extension(
        "fastpptp." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[numpy.get_include(), "fastpptp"],
        extra_compile_args=cflags,
        libraries=["pthread"],
    )
    for path in sorted(glob.glob("fastpptp/*.pyx"))
]

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": debug,
    "embedsignature": True,
}

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=os.environ.get("FASTPPTP_ANNOTATE") == "1",
        nthreads=0,
    ),
)
