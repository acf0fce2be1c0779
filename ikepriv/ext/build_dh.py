"""cffi build script for `ikepriv.ext._dh` (placeholder until the DH extension lands)."""

from pathlib import Path

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef("int ikepriv_dh_version(void);")
ffibuilder.set_source(
    "ikepriv.ext._dh",
    (Path(__file__).parent / "_dh.c").read_text(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
