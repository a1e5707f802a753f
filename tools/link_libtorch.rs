//! Build script of every crate whose binaries link libtorch (the trainer and the end-to-end
//! tests). torch-sys only gives its own C++ shim an rpath, and the linker drops
//! `libtorch.so` (and with it `libtorch_cuda.so`) as unneeded, which makes CUDA silently
//! unavailable. Here each binary gets an rpath to the real libtorch folder and keeps
//! `libtorch.so` linked, so it starts without `LD_LIBRARY_PATH` and sees the GPU.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let libtorch =
        std::env::var("LIBTORCH").expect("LIBTORCH is not set: run `./dev up` once, which installs torch 2.11.0");
    // Resolve the `.cairn/libtorch` link so binaries do not depend on the checkout they were
    // built from.
    let lib_dir = std::fs::canonicalize(PathBuf::from(&libtorch).join("lib"))
        .unwrap_or_else(|err| panic!("LIBTORCH={libtorch} has no lib folder: {err}"));
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:rustc-env=CAIRN_LIBTORCH_LIB={}", lib_dir.display());
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
}
