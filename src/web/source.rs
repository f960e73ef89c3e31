//! Reading a model into wasm memory: a URL (fetched), a `Response`, a `File` or `Blob`,
//! a `Uint8Array` or an `ArrayBuffer`. Streams are copied chunk by chunk into one `Vec`
//! reserved at the announced size, so the whole file exists once (in wasm memory) and
//! the page never holds a second full copy.

use js_sys::{ArrayBuffer, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, ReadableStream, ReadableStreamDefaultReader, Response};

/// Largest model wasm32 can hold: its address space is 4 GiB, and the engine, the
/// tokenizer and the JS glue need some of it.
pub const MAX_MODEL_BYTES: u64 = 3584 << 20;

fn err(msg: impl Into<String>) -> JsValue {
    js_sys::Error::new(&msg.into()).into()
}

fn too_large(bytes: u64) -> JsValue {
    err(format!(
        "the model is {} MiB but a WebAssembly page can hold at most {} MiB; pick a smaller model or quantization",
        bytes >> 20,
        MAX_MODEL_BYTES >> 20
    ))
}

/// Called as bytes arrive with (done, total), `total` 0 when unknown; returns false to
/// stop reading.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64) -> bool;

/// The bytes of `source`, reporting to `progress` as they arrive.
pub async fn read_all(source: &JsValue, progress: Progress<'_>) -> Result<Vec<u8>, JsValue> {
    if let Some(url) = source.as_string() {
        let response = fetch(&url).await?;
        return read_response(&response, progress).await;
    }
    if let Some(response) = source.dyn_ref::<Response>() {
        return read_response(response, progress).await;
    }
    if let Some(blob) = source.dyn_ref::<Blob>() {
        let total = blob.size() as u64;
        return read_stream(&blob.stream(), total, progress).await;
    }
    let array = if let Some(a) = source.dyn_ref::<Uint8Array>() {
        a.clone()
    } else if let Some(b) = source.dyn_ref::<ArrayBuffer>() {
        Uint8Array::new(b)
    } else {
        return Err(err(
            "load() takes a URL string, a Response, a File or Blob, a Uint8Array or an ArrayBuffer",
        ));
    };
    let total = array.length() as u64;
    if total > MAX_MODEL_BYTES {
        return Err(too_large(total));
    }
    let out = array.to_vec();
    if !progress(total, total) {
        return Err(err("loading was cancelled"));
    }
    Ok(out)
}

async fn fetch(url: &str) -> Result<Response, JsValue> {
    let global = js_sys::global();
    let fetch: Function = Reflect::get(&global, &"fetch".into())?
        .dyn_into()
        .map_err(|_| err("this context has no fetch()"))?;
    let promise: Promise = fetch.call1(&global, &url.into())?.dyn_into()?;
    let response: Response = JsFuture::from(promise)
        .await
        .map_err(|e| err(format!("could not fetch {url}: {}", describe(&e))))?
        .dyn_into()?;
    if !response.ok() {
        return Err(err(format!(
            "could not fetch {url}: HTTP {} {}",
            response.status(),
            response.status_text()
        )));
    }
    Ok(response)
}

async fn read_response(response: &Response, progress: Progress<'_>) -> Result<Vec<u8>, JsValue> {
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let body = response
        .body()
        .ok_or_else(|| err("the response has no body (already read?)"))?;
    read_stream(&body, total, progress).await
}

async fn read_stream(
    stream: &ReadableStream,
    total: u64,
    progress: Progress<'_>,
) -> Result<Vec<u8>, JsValue> {
    if total > MAX_MODEL_BYTES {
        return Err(too_large(total));
    }
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut out: Vec<u8> = Vec::new();
    out.try_reserve_exact(total as usize)
        .map_err(|_| err(format!("cannot reserve {} MiB of wasm memory", total >> 20)))?;
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if Reflect::get(&chunk, &"done".into())?.is_truthy() {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())?.dyn_into()?;
        let n = value.length() as usize;
        let start = out.len();
        if (start + n) as u64 > MAX_MODEL_BYTES {
            reader.release_lock();
            return Err(too_large((start + n) as u64));
        }
        out.try_reserve(n)
            .map_err(|_| err("out of wasm memory while reading the model"))?;
        out.resize(start + n, 0);
        value.copy_to(&mut out[start..]);
        if !progress(out.len() as u64, total) {
            let _ = reader.cancel();
            return Err(err("loading was cancelled"));
        }
    }
    Ok(out)
}

/// The message of a JS error, or its string form.
pub fn describe(e: &JsValue) -> String {
    if let Some(e) = e.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}
