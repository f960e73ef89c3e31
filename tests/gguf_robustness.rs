//! The GGUF reader against hostile and broken files (ROBUSTNESS.md cases 1-12 and 14):
//! one table row per malformed input, each asserting the error variant and that the
//! message names the field, plus writer round trips, truncation at every header byte,
//! single-byte corruption, and the real test model when it is present.

mod common;

use hearth::gguf::{
    parse, put_string, put_tensor_info, put_value, Array, GgufError, GgufFile, GgufWriter, Value,
};
use hearth::quant::GgmlType;

const U32: u32 = 4;
const STRING: u32 = 8;
const ARRAY: u32 = 9;

/// Header: magic, version, tensor count, kv count.
fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(version.to_le_bytes());
    out.extend(n_tensors.to_le_bytes());
    out.extend(n_kv.to_le_bytes());
    out
}

/// A tensor info row: name, dims, raw type id, offset.
type Info<'a> = (&'a str, &'a [u64], u32, u64);

/// A well-formed-looking v3 file from raw parts: header, kvs, infos, zero padding to
/// `align`, then `data_len` zero bytes of data.
fn build(kvs: &[(&str, Value)], infos: &[Info], align: usize, data_len: usize) -> Vec<u8> {
    let mut out = header(3, infos.len() as u64, kvs.len() as u64);
    for (k, v) in kvs {
        put_string(&mut out, k);
        put_value(&mut out, v);
    }
    for (name, dims, ty, off) in infos {
        put_tensor_info(&mut out, name, dims, *ty, *off);
    }
    out.resize(out.len().div_ceil(align) * align + data_len, 0);
    out
}

/// A file with one F32 tensor `t` of `dims` and enough data for it.
fn one_tensor(dims: &[u64], ty: u32) -> Vec<u8> {
    build(&[], &[("t", dims, ty, 0)], 32, 64)
}

/// Header then one key `k` followed by raw bytes (type id and payload written by hand).
fn raw_kv(key: &str, raw: &[u8]) -> Vec<u8> {
    let mut out = header(3, 0, 1);
    put_string(&mut out, key);
    out.extend(raw);
    out
}

fn le(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

type Check = fn(&GgufError) -> bool;

#[rustfmt::skip]
fn cases() -> Vec<(&'static str, Vec<u8>, Check, &'static str)> {
    let f32_id = GgmlType::F32.id();
    let big_name = "n".repeat(70_000);
    let mut dup_key = header(3, 0, 2);
    for _ in 0..2 {
        put_string(&mut dup_key, "general.name");
        put_value(&mut dup_key, &Value::String("x".into()));
    }
    let mut bad_magic = header(3, 0, 0);
    bad_magic[3] = b'X';
    let mut long_key = header(3, 0, 1);
    put_string(&mut long_key, &big_name);
    put_value(&mut long_key, &Value::U8(0));
    let mut long_tensor = header(3, 1, 0);
    put_tensor_info(&mut long_tensor, &big_name, &[4], f32_id, 0);
    long_tensor.resize(long_tensor.len() + 64, 0);
    let mut huge_key_len = header(3, 0, 1);
    huge_key_len.extend(u64::MAX.to_le_bytes());
    huge_key_len.extend([0u8; 32]);
    let mut bad_utf8 = header(3, 0, 1);
    put_string(&mut bad_utf8, "k\u{e9}");
    let n = bad_utf8.len();
    bad_utf8[n - 1] = 0xff;
    put_value(&mut bad_utf8, &Value::U8(0));

    vec![
        // 1. magic and version
        ("bad magic", bad_magic, |e| matches!(e, GgufError::BadMagic { .. }), "magic"),
        ("version 0", header(0, 0, 0), |e| matches!(e, GgufError::UnsupportedVersion { version: 0, .. }), "version 0"),
        ("version 1", header(1, 0, 0), |e| matches!(e, GgufError::UnsupportedVersion { version: 1, .. }), "version 1"),
        ("version 4", header(4, 0, 0), |e| matches!(e, GgufError::UnsupportedVersion { version: 4, .. }), "version 4"),
        ("big-endian v3", header(3u32.swap_bytes(), 0, 0), |e| matches!(e, GgufError::UnsupportedVersion { .. }), "big-endian"),
        ("empty file", vec![], |e| matches!(e, GgufError::Truncated { .. }), "magic"),
        // 2. absurd counts
        ("tensor count 2^64-1", header(3, u64::MAX, 0), |e| matches!(e, GgufError::CountTooLarge { count: u64::MAX, .. }), "tensor count"),
        ("kv count 2^64-1", header(3, 0, u64::MAX), |e| matches!(e, GgufError::CountTooLarge { count: u64::MAX, .. }), "metadata kv count"),
        // 3. strings
        ("key length 2^64-1", huge_key_len, |e| matches!(e, GgufError::StringTooLong { len: u64::MAX, .. }), "metadata key #0"),
        ("string value length 2^64-1", raw_kv("k", &le(&[&STRING.to_le_bytes(), &u64::MAX.to_le_bytes(), b"abc"])), |e| matches!(e, GgufError::StringTooLong { .. }), "'k'"),
        ("string past EOF", raw_kv("k", &le(&[&STRING.to_le_bytes(), &100u64.to_le_bytes(), b"0123456789"])), |e| matches!(e, GgufError::Truncated { needed: 100, available: 10, .. }), "'k'"),
        ("key not UTF-8", bad_utf8, |e| matches!(e, GgufError::InvalidUtf8 { .. }), "metadata key #0"),
        // 4. arrays
        ("array count 2^64-1", raw_kv("a", &le(&[&ARRAY.to_le_bytes(), &U32.to_le_bytes(), &u64::MAX.to_le_bytes(), &[0; 16]])), |e| matches!(e, GgufError::CountTooLarge { max: 4, .. }), "'a'"),
        ("string array count 2^64-1", raw_kv("a", &le(&[&ARRAY.to_le_bytes(), &STRING.to_le_bytes(), &u64::MAX.to_le_bytes(), &[0; 16]])), |e| matches!(e, GgufError::CountTooLarge { max: 2, .. }), "'a'"),
        ("array elem type 13", raw_kv("a", &le(&[&ARRAY.to_le_bytes(), &13u32.to_le_bytes(), &0u64.to_le_bytes()])), |e| matches!(e, GgufError::UnknownArrayType { id: 13, .. }), "'a'"),
        ("nested array", raw_kv("a", &le(&[&ARRAY.to_le_bytes(), &ARRAY.to_le_bytes(), &1u64.to_le_bytes(), &U32.to_le_bytes(), &0u64.to_le_bytes()])), |e| matches!(e, GgufError::NestedArray { .. }), "'a'"),
        ("bool array byte 2", raw_kv("a", &le(&[&ARRAY.to_le_bytes(), &7u32.to_le_bytes(), &2u64.to_le_bytes(), &[1, 2]])), |e| matches!(e, GgufError::InvalidBool { byte: 2, .. }), "'a'"),
        ("unknown value type 13", raw_kv("k", &le(&[&13u32.to_le_bytes(), &[0; 8]])), |e| matches!(e, GgufError::UnknownValueType { id: 13, .. }), "'k'"),
        ("bool byte 7", raw_kv("k", &le(&[&7u32.to_le_bytes(), &[7]])), |e| matches!(e, GgufError::InvalidBool { byte: 7, .. }), "'k'"),
        // 5. duplicates and long names
        ("duplicate key", dup_key, |e| matches!(e, GgufError::DuplicateKey { .. }), "'general.name'"),
        ("duplicate tensor", build(&[], &[("t", &[8], f32_id, 0), ("t", &[8], f32_id, 32)], 32, 64), |e| matches!(e, GgufError::DuplicateTensor { .. }), "'t'"),
        ("over-long key", long_key, |e| matches!(e, GgufError::StringTooLong { len: 70_000, .. }), "metadata key #0"),
        ("over-long tensor name", long_tensor, |e| matches!(e, GgufError::StringTooLong { len: 70_000, .. }), "tensor name #0"),
        // 6. known keys with the wrong type
        ("alignment as i32", build(&[("general.alignment", Value::I32(32))], &[], 32, 0), |e| matches!(e, GgufError::WrongType { expected: "u32", found: "i32", .. }), "'general.alignment'"),
        ("architecture as u32", build(&[("general.architecture", Value::U32(1))], &[], 32, 0), |e| matches!(e, GgufError::WrongType { expected: "string", .. }), "'general.architecture'"),
        // 7. alignment values
        ("alignment 0", build(&[("general.alignment", Value::U32(0))], &[], 32, 0), |e| matches!(e, GgufError::BadAlignment { value: 0, .. }), "general.alignment"),
        ("alignment 3", build(&[("general.alignment", Value::U32(3))], &[], 32, 0), |e| matches!(e, GgufError::BadAlignment { value: 3, .. }), "general.alignment"),
        ("alignment 2^31", build(&[("general.alignment", Value::U32(1 << 31))], &[], 32, 0), |e| matches!(e, GgufError::BadAlignment { .. }), "general.alignment"),
        // 8. dimensions
        ("n_dims 0", one_tensor(&[], f32_id), |e| matches!(e, GgufError::BadDimCount { n_dims: 0, .. }), "'t'"),
        ("n_dims 5", one_tensor(&[1, 1, 1, 1, 1], f32_id), |e| matches!(e, GgufError::BadDimCount { n_dims: 5, .. }), "'t'"),
        ("dim of 0", one_tensor(&[4, 0], f32_id), |e| matches!(e, GgufError::BadDim { index: 1, value: 0, .. }), "dims[1]"),
        ("dim of 2^63", one_tensor(&[1 << 63], f32_id), |e| matches!(e, GgufError::BadDim { index: 0, .. }), "dims[0]"),
        ("dim of 2^64-1", one_tensor(&[4, u64::MAX], f32_id), |e| matches!(e, GgufError::BadDim { index: 1, .. }), "'t'"),
        // 9. overflowing size arithmetic
        ("element count overflow", one_tensor(&[1 << 32, 1 << 32], f32_id), |e| matches!(e, GgufError::Overflow { .. }), "'t'"),
        ("byte size overflow", one_tensor(&[1 << 31, 1 << 31], f32_id), |e| matches!(e, GgufError::Overflow { .. }), "'t'"),
        ("offset overflow", build(&[], &[("t", &[4], f32_id, u64::MAX - 31)], 32, 64), |e| matches!(e, GgufError::Overflow { .. }), "'t'"),
        // 10. blocks and types
        ("row not block multiple", one_tensor(&[100, 2], GgmlType::Q4_K.id()), |e| matches!(e, GgufError::RowNotBlockMultiple { row_len: 100, .. }), "'t'"),
        ("unknown tensor type 9", one_tensor(&[4], 9), |e| matches!(e, GgufError::UnknownTensorType { id: 9, .. }), "'t'"),
        ("unknown tensor type 1000", one_tensor(&[4], 1000), |e| matches!(e, GgufError::UnknownTensorType { id: 1000, .. }), "'t'"),
        // 11. data layout
        ("data past EOF", build(&[], &[("t", &[64], f32_id, 0)], 32, 100), |e| matches!(e, GgufError::TensorOutOfBounds { n_bytes: 256, .. }), "'t'"),
        ("data offset past EOF", build(&[], &[("t", &[4], f32_id, 1 << 40)], 32, 64), |e| matches!(e, GgufError::TensorOutOfBounds { .. }), "'t'"),
        ("no data section at all", build(&[], &[("t", &[4], f32_id, 0)], 1, 0), |e| matches!(e, GgufError::TensorOutOfBounds { .. }), "'t'"),
        ("overlapping tensors", build(&[], &[("a", &[16], f32_id, 32), ("b", &[16], f32_id, 0)], 32, 128), |e| matches!(e, GgufError::TensorOverlap { .. }), "'a'"),
        ("misaligned offset", build(&[], &[("t", &[4], f32_id, 4)], 32, 64), |e| matches!(e, GgufError::TensorMisaligned { offset: 4, alignment: 32, .. }), "'t'"),
        ("misaligned for alignment 64", build(&[("general.alignment", Value::U32(64))], &[("t", &[4], f32_id, 32)], 64, 128), |e| matches!(e, GgufError::TensorMisaligned { alignment: 64, .. }), "'t'"),
   ]
}

#[test]
fn every_malformed_file_gives_its_error() {
    let mut failures = Vec::new();
    for (name, bytes, check, needle) in cases() {
        match parse(&bytes) {
            Ok(_) => failures.push(format!("{name}: parsed without error")),
            Err(e) => {
                let msg = e.to_string();
                if !check(&e) {
                    failures.push(format!("{name}: wrong variant: {e:?}"));
                } else if !msg.contains(needle) {
                    failures.push(format!("{name}: message lacks {needle:?}: {msg}"));
                } else if msg.contains('\n') {
                    failures.push(format!("{name}: message not one line: {msg}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn case_builders_are_valid_when_fixed() {
    // The malformed files differ from valid ones only in the field under test.
    let f32_id = GgmlType::F32.id();
    for bytes in [
        one_tensor(&[4, 2], f32_id),
        build(
            &[],
            &[("a", &[8], f32_id, 32), ("b", &[8], f32_id, 0)],
            32,
            64,
        ),
        build(
            &[("general.alignment", Value::U32(64))],
            &[("t", &[4], f32_id, 64)],
            64,
            128,
        ),
        raw_kv(
            "a",
            &le(&[
                &ARRAY.to_le_bytes(),
                &U32.to_le_bytes(),
                &1u64.to_le_bytes(),
                &[0; 4],
            ]),
        ),
    ] {
        parse(&bytes).unwrap();
    }
}

/// One value of every type, including arrays of every element type.
fn all_values() -> Vec<(String, Value)> {
    let s = |x: &str| x.to_string();
    let values = vec![
        Value::U8(200),
        Value::I8(-100),
        Value::U16(60_000),
        Value::I16(-30_000),
        Value::U32(4_000_000_000),
        Value::I32(-2_000_000_000),
        Value::F32(-1.25),
        Value::Bool(true),
        Value::Bool(false),
        Value::String(s("héllo \"world\"")),
        Value::String(String::new()),
        Value::U64(u64::MAX),
        Value::I64(i64::MIN),
        Value::F64(std::f64::consts::PI),
        Value::Array(Array::U8(vec![0, 1, 255])),
        Value::Array(Array::I8(vec![-128, 127])),
        Value::Array(Array::U16(vec![1, 65535])),
        Value::Array(Array::I16(vec![-1, 2])),
        Value::Array(Array::U32(vec![7])),
        Value::Array(Array::I32(vec![1, 2, 3])),
        Value::Array(Array::F32(vec![0.5, -0.0, f32::INFINITY])),
        Value::Array(Array::Bool(vec![true, false, true])),
        Value::Array(Array::String(vec![s("<pad>"), s(""), s("▁the")])),
        Value::Array(Array::U64(vec![u64::MAX, 0])),
        Value::Array(Array::I64(vec![-5])),
        Value::Array(Array::F64(vec![1e300])),
        Value::Array(Array::F32(vec![])),
        Value::Array(Array::String(vec![])),
    ];
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("test.{}.{i}", v.type_name()), v))
        .collect()
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A writer with every value type and tensors of several types and shapes.
fn sample_writer(alignment: Option<u32>) -> (GgufWriter, Vec<(String, Vec<u64>, GgmlType)>) {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("test".into()))
        .unwrap();
    if let Some(a) = alignment {
        w.set_alignment(a).unwrap();
    }
    for (k, v) in all_values() {
        w.add(k, v).unwrap();
    }
    let shapes = vec![
        ("norm.weight".to_string(), vec![7], GgmlType::F32),
        ("h".to_string(), vec![3, 5], GgmlType::F16),
        ("q8".to_string(), vec![64, 3], GgmlType::Q8_0),
        ("q5".to_string(), vec![32, 1, 2], GgmlType::Q5_0),
        ("q4k".to_string(), vec![512, 2], GgmlType::Q4_K),
        ("q6k".to_string(), vec![256, 1, 1, 3], GgmlType::Q6_K),
    ];
    for (i, (name, dims, ty)) in shapes.iter().enumerate() {
        let n = ty.bytes_for(dims.iter().product()).unwrap() as usize;
        w.add_tensor(name.clone(), dims, *ty, noise(n, i as u64))
            .unwrap();
    }
    (w, shapes)
}

#[test]
fn round_trip_every_value_type_version_and_alignment() {
    for alignment in [None, Some(32), Some(64), Some(1), Some(4096)] {
        let (w, shapes) = sample_writer(alignment);
        let v3 = w.to_bytes();
        let mut v2 = v3.clone();
        v2[4..8].copy_from_slice(&2u32.to_le_bytes());
        for (version, bytes) in [(3, v3), (2, v2)] {
            let f = GgufFile::from_bytes(bytes).unwrap();
            let align = u64::from(alignment.unwrap_or(32));
            assert_eq!((f.version, f.alignment), (version, align));
            assert_eq!(f.data_offset % align, 0);
            assert_eq!(f.architecture().unwrap(), "test");
            let got: Vec<_> = f
                .metadata()
                .iter()
                .filter(|(k, _)| k.starts_with("test."))
                .cloned()
                .collect();
            assert_eq!(got, all_values());
            for (k, v) in all_values() {
                assert_eq!(f.get(&k), Some(&v));
            }
            assert_eq!(f.tensors.len(), shapes.len());
            for (i, (name, dims, ty)) in shapes.iter().enumerate() {
                let t = f.tensor(name).unwrap();
                assert_eq!((&t.name, &t.dims, t.ty), (name, dims, *ty));
                assert_eq!(t.offset % align, 0);
                assert_eq!(t.n_elements(), dims.iter().product::<u64>());
                assert_eq!(t.row_len(), dims[0]);
                assert_eq!(t.n_rows() * t.row_len(), t.n_elements());
                let data = f.tensor_data(t);
                assert_eq!(data.len() as u64, t.n_bytes);
                assert_eq!(data, noise(data.len(), i as u64));
            }
        }
    }
}

#[test]
fn open_maps_a_written_file() {
    let (w, _) = sample_writer(Some(64));
    let path = std::env::temp_dir().join(format!("hearth-gguf-{}.gguf", std::process::id()));
    w.write_to(std::fs::File::create(&path).unwrap()).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.file_size(), w.to_bytes().len() as u64);
    assert_eq!(f.as_bytes(), &w.to_bytes()[..]);
    drop(f);
    std::fs::remove_file(&path).unwrap();
    let err = GgufFile::open(&path).unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }));
    assert!(err.to_string().contains("hearth-gguf-"), "{err}");
}

#[test]
fn every_truncation_is_an_error() {
    let (w, _) = sample_writer(None);
    let bytes = w.to_bytes();
    let f = parse(&bytes).unwrap();
    let last_end = f
        .tensors
        .iter()
        .map(|t| f.data_offset + t.offset + t.n_bytes)
        .max()
        .unwrap() as usize;
    let d = f.data_offset as usize;
    let data_cuts = [d, d + 1, (d + last_end) / 2, last_end - 1];
    for n in (0..d).chain(data_cuts) {
        assert!(parse(&bytes[..n]).is_err(), "prefix of {n} bytes parsed");
    }
    parse(&bytes[..last_end]).unwrap();
}

#[test]
fn corrupting_any_header_byte_never_panics() {
    let (w, _) = sample_writer(None);
    let bytes = w.to_bytes();
    let header_len = parse(&bytes).unwrap().data_offset as usize;
    let mut broken = bytes.clone();
    for i in 0..header_len {
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff, bytes[i] ^ 0x10] {
            broken[i] = v;
            let _ = parse(&broken);
        }
        broken[i] = bytes[i];
    }
}

#[test]
fn real_model_parses() {
    let Some(path) = common::real_model() else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.architecture().unwrap(), "gemma3");
    assert_eq!(f.tensors.len(), 236);
    use GgmlType::*;
    for t in &f.tensors {
        assert!(
            [F32, Q5_0, Q8_0, Q4_K, Q6_K].contains(&t.ty),
            "{}: {}",
            t.name,
            t.ty
        );
        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
    }
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!((emb.dims.as_slice(), emb.ty), (&[640, 262144][..], Q8_0));
    let tokens = f.require_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 262144);
    assert_eq!(f.require_u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(f.require_u32("gemma3.embedding_length").unwrap(), 640);
}
