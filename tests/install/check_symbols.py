"""install_symbols: libqiao.so exports exactly the frozen list
cmake/libqiao.symbols (nm -D --defined-only), and that list is exactly the
functions the public headers declare: a function added to a header without
the list, one exported without a header, or an internal symbol leaking out
all fail here.

usage: check_symbols.py LIBQIAO_SO SYMBOLS_FILE INCLUDE_DIR"""
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from public_api import declared_functions  # noqa: E402


def main(library, symbols_file, include_dir):
    frozen = sorted(
        line.strip() for line in open(symbols_file) if line.strip() and not line.startswith("#")
    )
    out = subprocess.run(
        ["nm", "-D", "--defined-only", library], check=True, capture_output=True, text=True
    ).stdout
    exported = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] != "A":  # "A QIAO_0" is the version node
            exported.append(fields[2].split("@")[0])
    exported.sort()
    declared = declared_functions(include_dir)
    ok = True
    for what, a, b in (
        ("exported by %s but not in %s" % (library, symbols_file), exported, frozen),
        ("in %s but not exported" % symbols_file, frozen, exported),
        ("declared in %s/qiao but not in %s" % (include_dir, symbols_file), declared, frozen),
        ("in %s but declared in no public header" % symbols_file, frozen, declared),
    ):
        extra = sorted(set(a) - set(b))
        if extra:
            ok = False
            print("FAIL: %d %s: %s" % (len(extra), what, " ".join(extra)))
    if len(exported) != len(set(exported)):
        ok = False
        print("FAIL: a symbol is exported twice")
    major = [line.split()[2] for line in open(os.path.join(include_dir, "qiao", "version.h"))
             if line.startswith("#define QIAO_VERSION_MAJOR ")][0]
    dynamic = subprocess.run(
        ["readelf", "-d", library], check=True, capture_output=True, text=True
    ).stdout
    if "Library soname: [libqiao.so.%s]" % major not in dynamic:
        ok = False
        print("FAIL: the soname is not libqiao.so.%s (version.h's major)" % major)
    if ok:
        print("libqiao.so.%s exports the %d functions of the public headers and nothing else"
              % (major, len(frozen)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
