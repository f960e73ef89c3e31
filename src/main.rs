//! The `hearth` command line.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    hearth::cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
