//! Generates the Rust view of `include/tapio/events.h` with bindgen.
//!
//! The header is parsed as the BPF compile sees it (`-target bpf`), so the
//! generated layout is the one the kernel writes. bindgen's layout tests turn
//! any size/offset disagreement into a compile error.
use std::{env, path::PathBuf};

fn main() {
    let header = "include/tapio/events.h";
    println!("cargo:rerun-if-changed={header}");
    let bindings = bindgen::Builder::default()
        .header(header)
        .clang_args(["-target", "bpf", "-Iinclude"])
        .allowlist_type("tapio_.*")
        .allowlist_var("TAPIO_.*")
        .rustified_enum("tapio_event_kind")
        .constified_enum_module("tapio_lost_reason")
        .constified_enum_module("tapio_twin_slot")
        .constified_enum_module("tapio_exec_flags")
        .constified_enum_module("tapio_tcp_outcome")
        .constified_enum_module("tapio_family")
        .constified_enum_module("tapio_dns_flags")
        .constified_enum_module("tapio_dns_direction")
        .constified_enum_module("tapio_dns_encryption")
        .constified_enum_module("tapio_xdp_reason")
        .constified_enum_module("tapio_xdp_policy_flags")
        .constified_enum_module("tapio_sec_op")
        .constified_enum_module("tapio_sec_flags")
        .constified_enum_module("tapio_lsm_hook")
        .constified_enum_module("tapio_lsm_action")
        .constified_enum_module("tapio_lsm_rule_flags")
        .constified_enum_module("tapio_lsm_hook_flags")
        .constified_enum_module("tapio_lsm_file_op")
        .constified_enum_module("tapio_sec_cred_source")
        .constified_enum_module("tapio_sec_syscall")
        .constified_enum_module("tapio_tc_proto")
        .constified_enum_module("tapio_tc_direction")
        .constified_enum_module("tapio_tc_cb_state")
        .constified_enum_module("tapio_tc_flow_flags")
        .constified_enum_module("tapio_oom_source")
        .constified_enum_module("tapio_oom_flags")
        .constified_enum_module("tapio_io_uring_result")
        .constified_enum_module("tapio_mem_allocator")
        .constified_enum_module("tapio_unit_op")
        .constified_enum_module("tapio_unit_flags")
        .constified_enum_module("tapio_netns_via")
        .constified_enum_module("tapio_cni_flags")
        .derive_default(true)
        .derive_debug(true)
        .impl_debug(false)
        .use_core()
        .layout_tests(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on shared/include/tapio/events.h");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR set by cargo"));
    bindings
        .write_to_file(out.join("events.rs"))
        .expect("write generated bindings");
}
