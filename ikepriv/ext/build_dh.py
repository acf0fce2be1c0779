"""cffi build script for `ikepriv.ext._dh`, the MODP Diffie-Hellman hot path.

Links against GMP (libgmp-dev to build, libgmp10 to run) for its side-channel
silent mpn_sec_* primitives, and against the system's OpenSSL libcrypto
(libssl-dev to build, libssl3 to run) for BN_mod_exp_mont_consttime, the
shared-secret path on CPUs without AVX-512 IFMA.  That libcrypto is separate
from the copy statically linked into `cryptography`; the two do not share
symbols or state.  cffi releases the GIL around every call, which is safe
because no function in _dh.c touches a Python object, and the per-group state
(tables, BN_MONT_CTX) is read-only after ikepriv_modp_new.
"""

from pathlib import Path

from cffi import FFI

CDEF = """
typedef struct ikepriv_modp ikepriv_modp;
#define IKEPRIV_DH_OK 0
#define IKEPRIV_DH_EINVAL -1
#define IKEPRIV_DH_EPEER -2
#define IKEPRIV_DH_ENOMEM -3
#define IKEPRIV_DH_EWEAK -4
int ikepriv_dh_version(void);
int ikepriv_dh_set_impl(int choice);
int ikepriv_modp_impl(const ikepriv_modp *g);
int ikepriv_dh_impl_available(int choice);
void ikepriv_wipe(void *buf, size_t len);
int ikepriv_modp_new(const uint8_t *p, size_t plen, unsigned exp_bits, ikepriv_modp **out);
void ikepriv_modp_free(ikepriv_modp *g);
size_t ikepriv_modp_exp_len(const ikepriv_modp *g);
int ikepriv_modp_keygen(const ikepriv_modp *g, uint8_t *x, size_t xlen,
                        uint8_t *pub, size_t publen);
int ikepriv_modp_shared(const ikepriv_modp *g, const uint8_t *x, size_t xlen,
                        const uint8_t *peer, size_t peerlen, uint8_t *out, size_t outlen);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "ikepriv.ext._dh",
    (Path(__file__).parent / "_dh.c").read_text(),
    libraries=["gmp", "crypto"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)


def build_in_place() -> Path:
    """Compile next to the sources (what an editable install loads), without pip.

    cffi writes its generated C file as `_dh.c` in the build directory, so the
    build runs in a scratch directory: compiling in the source tree would
    overwrite our own _dh.c.
    """
    import shutil
    import sysconfig
    import tempfile

    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(ffibuilder.compile(tmpdir=tmp))
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        for stale in here.glob("_dh.*.so"):
            stale.unlink()
        dest = here / ("_dh" + (".abi3.so" if built.name.endswith(".abi3.so") else suffix))
        shutil.copy2(built, dest)
    return dest


if __name__ == "__main__":
    print(build_in_place())
