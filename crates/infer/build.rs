//! Link settings that tch's own build script emits only for tch's own targets
//! (`cargo:rustc-link-arg` is not inherited by dependents), so every binary and test finds
//! libtorch without `LD_LIBRARY_PATH` and keeps `libtorch_cuda` on a CUDA build. Shared by every
//! crate that links libtorch (`build = "…/crates/infer/build.rs"` in worker and benches); each
//! needs a direct `torch-sys` dependency, which is what passes `DEP_TCH_LIBTORCH_LIB`.

fn main() {
    // torch-sys (`links = "tch"`) exports its libtorch lib dir to direct dependents.
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // Bake the libtorch dir in as RUNPATH: no LD_LIBRARY_PATH at run time.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    // Keep libtorch.so linked despite --as-needed. On a CUDA libtorch it is libtorch.so that
    // NEEDS libtorch_cuda.so; without this `tch::Cuda::is_available()` is false.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
}
