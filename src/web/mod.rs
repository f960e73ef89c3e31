//! The browser build: the engine behind a small JavaScript API (`wasm-bindgen`), used by
//! the demo page in `examples/web/` and built by `scripts/build-web.sh`. `params` reads
//! what the page sends (plain Rust, tested natively); `bindings` and `source` exist only
//! on wasm32: the exported `Hearth` class and reading a model from a URL, `Response`,
//! `File`/`Blob` or byte array into wasm memory, one copy, chunk by chunk.

pub mod params;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
mod source;

#[cfg(target_arch = "wasm32")]
pub use bindings::Hearth;
