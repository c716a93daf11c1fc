{
  "targets": [
    {
      "target_name": "zerohold",
      "sources": [
        "src/native/addon.cc",
        "src/native/args.cc",
        "src/native/bpf_link.cc",
        "src/native/bpf_map.cc",
        "src/native/bpf_map_mapped.cc",
        "src/native/bpf_object.cc",
        "src/native/bpf_program.cc",
        "src/native/btf_layout.cc",
        "src/native/endpoint_netns.cc",
        "src/native/if_index.cc",
        "src/native/interfaces.cc",
        "src/native/libbpf_log.cc",
        "src/native/live_frames.cc",
        "src/native/mapped_array.cc",
        "src/native/netns.cc",
        "src/native/netns_socket.cc",
        "src/native/object_handle.cc",
        "src/native/object_load.cc",
        "src/native/pinned_object.cc",
        "src/native/promise_worker.cc",
        "src/native/ring_buffer.cc",
        "src/native/sys_error.cc",
        "src/native/tc_attachment.cc",
        "src/native/tc_filter_sweep.cc",
        "src/native/test_run.cc",
        "src/native/xdp.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "_GNU_SOURCE"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
