# Writes OUTPUT, a C file defining `const char ocl__kernel_source[]`: the
# files in SOURCES (a ;-list, in order) concatenated, as byte values so that
# no escaping is needed. Run with cmake -P at build time.
set(text "")
foreach(src ${SOURCES})
  file(READ "${src}" content)
  get_filename_component(name "${src}" NAME)
  string(APPEND text "/* ---- ${name} */\n${content}\n")
endforeach()
file(WRITE "${OUTPUT}.tmp" "${text}")
file(READ "${OUTPUT}.tmp" hex HEX)
file(REMOVE "${OUTPUT}.tmp")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}"
  "/* Generated from the backends/opencl/kernels files by embed_kernels.cmake: do not edit. */\n"
  "const char ocl__kernel_source[] = {\n${bytes}0x00};\n")
