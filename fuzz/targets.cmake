# The fuzz targets: qiao_fuzz_target(NAME LIBS...) builds fuzz/NAME.c
# against LIBS; its seed corpus is fuzz/corpus/NAME/. fuzz/CMakeLists.txt
# defines qiao_fuzz_target as a libFuzzer build (QIAO_FUZZ=ON, clang);
# tests/format/CMakeLists.txt defines it as a replay program for the CTest
# test format_fuzz_corpus_replay (always on). Add a target with one line.
qiao_fuzz_target(fuzz_gguf qiao_format)
qiao_fuzz_target(fuzz_qiao qiao_format)
qiao_fuzz_target(fuzz_safetensors qiao_format)
qiao_fuzz_target(fuzz_llama2c qiao_format)
qiao_fuzz_target(fuzz_tokenizer qiao_tokenizer qiao_format)
qiao_fuzz_target(fuzz_template qiao_template)
