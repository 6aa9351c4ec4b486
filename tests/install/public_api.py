"""The functions the public headers declare: every `qiao_*` name called like
a function at file scope of include/qiao/*.h (struct members, typedefs and
macros excluded). Shared by the symbol test and the generator of the linker
version script, so that the two cannot disagree."""
import pathlib
import re
import sys

# Headers that describe what a device plugin exports, not what libqiao does.
PLUGIN_SIDE = {"qiao_device_get_api"}


def declared_functions(include_dir):
    names = set()
    for header in sorted(pathlib.Path(include_dir).glob("qiao/*.h")):
        text = header.read_text()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", " ", text)
        # extern "C" { ... } wraps the whole header for C++ readers.
        text = re.sub(r"#ifdef __cplusplus.*?#endif", " ", text, flags=re.S)
        text = re.sub(r"^\s*#(?:[^\n]*\\\n)*[^\n]*", " ", text, flags=re.M)
        depth = 0
        statement = []
        for ch in text:
            if ch == "{":
                depth += 1
                statement = []
            elif ch == "}":
                depth -= 1
                statement = []
            elif ch == ";":
                if depth == 0:
                    s = " ".join("".join(statement).split())
                    m = re.match(r"^(?!typedef\b)[\w\s\*]*?\b(qiao_\w+)\s*\(", s)
                    if m and "(*" not in s:
                        names.add(m.group(1))
                statement = []
            else:
                statement.append(ch)
    return sorted(names - PLUGIN_SIDE)


if __name__ == "__main__":
    print("\n".join(declared_functions(sys.argv[1])))
