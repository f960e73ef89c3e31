//! The bodies of the fuzz targets: each takes arbitrary bytes, drives one path that reads
//! untrusted input the way hearth does, and asserts what must hold; any panic is a bug.
//! `fuzz/fuzz_targets/*.rs` call these under libFuzzer, and `tests/fuzz_corpus.rs`
//! replays every committed corpus file through them, so plain `cargo test` keeps the
//! findings fixed without a nightly toolchain (`scripts/fuzz.sh` runs the campaigns).

use crate::gguf::GgufFile;
use crate::grammar::JsonGrammar;
use crate::model::{check_tensors, expected_tensors, ModelConfig};
use crate::quant::dequantize_to_vec;
use crate::reference::{RefCache, Reference};
use crate::tokenizer::{
    ChatTemplate, Message, RenderOptions, StreamDecoder, TemplateError, TemplateOrigin, Tokenizer,
};

mod vocabs;

/// Tensors up to this many elements are dequantized (the loader's CPU path).
const DEQUANT_LIMIT: u64 = 1 << 20;

/// GGUF: parses the bytes with the real reader and, when they parse, walks what a loader
/// reads: every tensor's size and data, the typed getters, the model configuration and
/// tensor checks, the CPU reference (load and one step), the tokenizer and the template.
pub fn gguf(data: &[u8]) {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let h = f.header();
    assert!(h.data_offset <= f.file_size() || h.tensors.is_empty());
    for t in &h.tensors {
        let bytes = f.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.n_bytes, "{}", t.name);
        assert_eq!(
            t.ty.bytes_for(t.n_elements()),
            Some(t.n_bytes),
            "{}",
            t.name
        );
        assert_eq!(
            t.row_bytes().checked_mul(t.n_rows()),
            Some(t.n_bytes),
            "{}",
            t.name
        );
        if t.n_elements() <= DEQUANT_LIMIT {
            if let Ok(v) = dequantize_to_vec(t.ty, bytes) {
                assert_eq!(v.len() as u64, t.n_elements(), "{}", t.name);
            }
        }
    }
    for (key, _) in h.metadata() {
        let _ = h.get_u32(key);
        let _ = h.get_u64(key);
        let _ = h.get_i32(key);
        let _ = h.get_f32(key);
        let _ = h.get_bool(key);
        let _ = h.get_str(key);
        let _ = h.get_str_array(key);
        let _ = h.get_f32_array(key);
        let _ = h.get_i32_array(key);
    }
    let _ = h.architecture();
    if let Ok(cfg) = ModelConfig::from_gguf(h) {
        let _ = expected_tensors(&cfg);
        if check_tensors(&cfg, h).is_ok() {
            if let Ok(r) = Reference::load(&f) {
                let mut cache = RefCache::new(&cfg, 2, false);
                let last = (cfg.vocab as u32).saturating_sub(1);
                let _ = r.forward(&mut cache, &[0, last], 0);
            }
        }
    }
    if let Ok(tok) = Tokenizer::from_gguf(h) {
        for text in ["", "Hello world", " <s>x</s>\n\n\u{2581}é日本"] {
            for (add, parse) in [(false, false), (true, true)] {
                if let Ok(ids) = tok.encode(text, add, parse) {
                    assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
                    let _ = tok.decode(&ids, true);
                }
            }
        }
        let n = tok.vocab_size() as u32;
        let ids: Vec<u32> = (0..n.min(512)).chain([n, u32::MAX]).collect();
        let _ = tok.decode(&ids, true);
        let mut stream = StreamDecoder::new();
        for &id in &ids {
            let _ = stream.push(&tok, id);
        }
        let _ = stream.finish();
    }
    if let Ok(Some(t)) = ChatTemplate::for_model(h) {
        // A template from a file renders under the same limits as any other (see
        // `chat_template`); here only that it loaded.
        let _ = t.describe();
    }
}

/// Tokenizer: the first byte picks the vocabulary (SentencePiece, byte-level BPE with
/// one of several pre-tokenizers, or Gemma 4's UTF-8 BPE) and the flags; the rest is
/// encoded as text (lossy UTF-8) and decoded as token ids (including out-of-range ids).
/// Checks: ids in range, decode(encode(text)) == text where the vocabulary promises it,
/// and the stream decoder gives exactly what decoding the whole sequence gives.
pub fn tokenizer(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (tok, kind) = vocabs::get(flags >> 2);
    let add_special = flags & 1 != 0;
    let parse_special = flags & 2 != 0;
    let text = String::from_utf8_lossy(rest);
    let n = tok.vocab_size();

    let ids = tok
        .encode(&text, add_special, parse_special)
        .unwrap_or_else(|e| panic!("encoding {text:?}: {e}"));
    assert!(
        ids.iter().all(|&i| (i as usize) < n),
        "id out of range: {ids:?}"
    );
    if add_special && tok.add_bos() {
        assert_eq!(ids.first().copied(), tok.bos());
    }
    if vocabs::round_trips(kind, &text, parse_special) {
        let plain = tok
            .encode(&text, false, parse_special)
            .unwrap_or_else(|e| panic!("encoding {text:?}: {e}"));
        let back = tok.decode(&plain, true);
        assert_eq!(back, text, "decode(encode(text)) for {kind:?}: {plain:?}");
    }
    check_stream(tok, &ids);

    // The bytes as ids: two bytes each (mostly out of range), and one byte each shifted
    // into the vocabulary.
    let wide: Vec<u32> = rest
        .chunks(2)
        .map(|c| u32::from(c[0]) | u32::from(*c.get(1).unwrap_or(&0)) << 8)
        .collect();
    let narrow: Vec<u32> = rest
        .iter()
        .map(|&b| (u32::from(b) + u32::from(flags)) % (n as u32 + 2))
        .collect();
    for ids in [wide, narrow] {
        let _ = tok.decode(&ids, true);
        let _ = tok.decode(&ids, false);
        check_stream(tok, &ids);
    }
}

/// Pushing `ids` one by one through a [`StreamDecoder`] yields the lossy UTF-8 of all
/// their bytes, the same text whole-sequence decoding gives.
fn check_stream(tok: &Tokenizer, ids: &[u32]) {
    let mut stream = StreamDecoder::new();
    let mut streamed = String::new();
    let mut bytes = Vec::new();
    for &id in ids {
        streamed += &stream.push(tok, id);
        bytes.extend(tok.token_bytes(id, false));
    }
    streamed += &stream.finish();
    assert_eq!(
        streamed,
        String::from_utf8_lossy(&bytes),
        "stream of {ids:?}"
    );
}

/// Chat templates: the input is a template, then NUL-separated role and content pairs.
/// Rendering must end in text or a [`TemplateError`], never a panic, within the fuel
/// and output limits.
pub fn chat_template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let source = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let messages: Vec<Message> = rest
        .chunks(2)
        .map(|c| match c {
            [role, content] => Message::new(*role, *content),
            [content] => Message::new("user", *content),
            _ => unreachable!("chunks(2) yields one or two"),
        })
        .collect();
    let Ok(t) = ChatTemplate::new(source, TemplateOrigin::File("fuzz".into())) else {
        return;
    };
    for add_generation_prompt in [true, false] {
        let opts = RenderOptions {
            add_generation_prompt,
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
            date: Some("2026-11-25".into()),
            tools: None,
        };
        match t.render(&messages, &opts) {
            Ok(out) => {
                let input: usize = messages
                    .iter()
                    .map(|m| m.role.len() + m.content.len())
                    .sum();
                let limit = crate::tokenizer::template::OUTPUT_LIMIT
                    + input * crate::tokenizer::template::OUTPUT_PER_INPUT_BYTE;
                assert!(out.len() <= limit, "{} bytes past the limit", out.len());
            }
            Err(TemplateError::Syntax { .. }) => panic!("parsed once, then a syntax error"),
            Err(_) => {}
        }
    }
}

/// The JSON grammar: the recognizer must agree with a real JSON parser. Text it calls a
/// complete object parses as one (serde_json), and every object serde_json parses that
/// stays within the grammar's depth and whitespace bounds is accepted and complete. The
/// input is also fed in chunks, each tried with `accepts` first as the engine does.
pub fn json_grammar(data: &[u8]) {
    let mut g = JsonGrammar::new();
    let mut accepted = 0;
    for &b in data {
        if !g.advance(&[b]) {
            break;
        }
        accepted += 1;
    }
    let whole = accepted == data.len();
    let complete = whole && g.is_complete();
    // The engine's output text is the lossy UTF-8 of the bytes: what a client parses.
    let text = String::from_utf8_lossy(data);
    // serde_json gives keys such as "$serde_json::private::RawValue" a meaning of its
    // own (with its raw_value feature, which a dependency turns on); JSON does not.
    if text.contains("$serde_json::private::") {
        return;
    }
    let parsed = serde_json::from_str::<serde_json::Value>(&text);
    if complete {
        match &parsed {
            Ok(v) => assert!(v.is_object(), "accepted a non-object: {v}"),
            Err(e) => assert!(
                serde_json_limit(e),
                "the grammar accepted {text:?}, which serde_json rejects: {e}"
            ),
        }
    }
    if let (Ok(v), std::borrow::Cow::Borrowed(_)) = (&parsed, &text) {
        if v.is_object()
            && depth(v) <= 64
            && longest_space_run(data) <= crate::grammar::MAX_SPACE_RUN
        {
            assert!(complete, "the grammar rejected {text:?} at byte {accepted}");
        }
    }

    // Chunked, as candidates: `accepts` agrees with `advance` on a clone.
    let mut g = JsonGrammar::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n % 8).min(tail.len());
        let (chunk, tail) = tail.split_at(n);
        let ok = g.accepts(chunk);
        assert_eq!(ok, g.clone().advance(chunk));
        if !ok {
            break;
        }
        g.advance(chunk);
        rest = tail;
    }
}

/// Whether `e` is one of serde_json's own limits rather than a JSON syntax error: a
/// number too large for an f64, or `\u` escapes that are unpaired surrogates (reported
/// as a lone surrogate, an unexpected end of the escape or an invalid code point). The
/// JSON grammar (RFC 8259) allows both, and so does the recognizer.
fn serde_json_limit(e: &serde_json::Error) -> bool {
    let msg = e.to_string();
    [
        "number out of range",
        "surrogate",
        "end of hex escape",
        "invalid unicode code point",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

/// Nesting depth of objects and arrays (a flat object is 1).
fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The longest run of JSON whitespace anywhere in `data` (inside strings too, which
/// only makes the bound conservative).
fn longest_space_run(data: &[u8]) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for &b in data {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

/// Server request bodies: the same bytes go through the checks of every endpoint that
/// takes a JSON body (ollama generate, chat, show/delete, copy, pull; OpenAI chat and
/// completions), the handlers' only path from bytes to a request. A rejection must be a
/// 4xx with a message; an accepted request must hold a safe model name and options that
/// fit a context window without any allocation sized by the client.
#[cfg(not(target_arch = "wasm32"))]
pub fn server_request(data: &[u8]) {
    use crate::server::{ollama, openai, store_api, ApiError};

    fn rejected<T>(r: Result<T, ApiError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                assert!(e.status.is_client_error(), "{e}");
                assert!(!e.message.is_empty());
                None
            }
        }
    }
    fn safe_name(name: &str) {
        // A name with a namespace (`user/model:tag`, `host/ns/model:tag`) is only ever
        // looked up among ollama's models: it must read as one, and hearth's own store
        // (where names become paths) must refuse it.
        if name.contains('/') {
            assert!(
                crate::store::external::ollama_key(name).is_some()
                    && crate::store::ModelName::parse(name).is_err(),
                "unsafe model name {name:?}"
            );
        }
        assert!(
            !name.contains('\\') && !name.contains("..") && !name.contains("://"),
            "unsafe model name {name:?}"
        );
        assert!(name.contains(':'), "not canonical: {name:?}");
    }
    fn fits(wanted: crate::server::options::Wanted) {
        for (prompt, capacity) in [(0, 1), (1, 4096), (4095, 4096), (5000, 4096)] {
            let Some(opts) = rejected(wanted.clone().fit(prompt, capacity)) else {
                assert!(prompt >= capacity.min(wanted.num_ctx.unwrap_or(capacity)));
                continue;
            };
            let room = capacity - prompt;
            assert!(opts.max_tokens.is_some_and(|m| m <= room));
            assert!(opts.sampling.repeat_last_n <= capacity);
            let sampler = crate::sampling::Sampler::new(opts.sampling.clone());
            assert!(sampler.is_ok(), "validated options refused: {sampler:?}");
        }
    }

    if let Some(call) = rejected(ollama::check_generate(data)) {
        safe_name(&call.name);
        let _ = call.load_only();
        for own_template in [false, true] {
            let _ = ollama::generate_prompt(own_template, &call.req);
        }
        fits(call.wanted);
    }
    if let Some(call) = rejected(ollama::check_chat(data)) {
        safe_name(&call.name);
        fits(call.wanted);
    }
    if let Some(call) = rejected(openai::check_chat(data)) {
        safe_name(&call.name);
        assert!(matches!(&call.prompt, crate::engine::Prompt::Chat(m) if !m.is_empty()));
        fits(call.wanted);
    }
    if let Some(call) = rejected(openai::check_completion(data)) {
        safe_name(&call.name);
        fits(call.wanted);
    }
    if let Some((name, _)) = rejected(store_api::check_name(data)) {
        safe_name(&name);
    }
    if let Some((src, dst)) = rejected(store_api::check_copy(data)) {
        safe_name(&src);
        safe_name(&dst);
    }
    let _ = rejected(store_api::check_pull(data));
}

/// Constraints a request may carry (ollama's `format`, OpenAI's `response_format`,
/// hearth's grammars): the first byte picks the vocabulary and the kind (JSON schema,
/// Lark, GBNF, regular expression, a Lark grammar behind a trigger), the rest is its
/// text. Compiling must end in a constraint or a [`ConstraintError`] with a message;
/// a constraint is then driven for up to 24 tokens, each an allowed one picked by the
/// input: an allowed token is always accepted, and end-of-generation is allowed
/// exactly when the text so far is a complete match.
pub fn constraint(data: &[u8]) {
    use crate::constraint::{ConstraintError, Format};

    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (tok, grammars) = grammar_vocab(usize::from(flags >> 4));
    let text = String::from_utf8_lossy(rest).into_owned();
    let format = match flags % 6 {
        0 => match serde_json::from_str(&text) {
            Ok(v) => Format::schema(v),
            Err(_) => return,
        },
        1 => Format::Lark(text),
        2 => Format::Gbnf(text),
        3 => Format::Regex(text),
        4 => Format::grammar(&text),
        _ => Format::Triggered {
            trigger: "<tool_call>".into(),
            then: Box::new(Format::grammar(&text)),
        },
    };
    let mut c = match grammars.constraint(&format) {
        Ok(c) => c,
        Err(ConstraintError::Invalid(m)) => {
            assert!(!m.trim().is_empty(), "an empty message");
            return;
        }
        Err(e) => panic!("the fuzz vocabularies are usable: {e}"),
    };
    let mut eog = tok.eog_ids();
    eog.extend(tok.eos());
    // Picks from the input's bytes, then from a counter.
    let mut picks = rest.iter().rev().copied().chain(0u8..);
    let mut taken = Vec::new();
    for _ in 0..24 {
        let Ok(mask) = c.mask() else {
            break;
        };
        let accepting = c.is_accepting();
        if let Some(&e) = eog.iter().find(|&&e| mask.allows(e)) {
            assert!(
                accepting,
                "end token {e} allowed before a complete match: {:?}",
                tok.decode(&taken, false)
            );
        }
        let allowed: Vec<u32> = (0..tok.vocab_size() as u32)
            .filter(|&id| mask.allows(id) && !eog.contains(&id))
            .collect();
        if allowed.is_empty() {
            assert!(
                accepting || mask.count() == 0,
                "only end tokens allowed, yet the text is not a complete match"
            );
            break;
        }
        let pick = allowed[usize::from(picks.next().unwrap_or(0)) * 7919 % allowed.len()];
        c.accept(pick)
            .unwrap_or_else(|e| panic!("allowed token {pick} refused: {e}"));
        taken.push(pick);
    }
}

/// Grammar vocabulary `i` (modulo their count: SentencePiece, Gemma 4's, byte-level
/// BPE) with llguidance's view of it, built once per process (its token trie is most
/// of a constraint's setup).
fn grammar_vocab(i: usize) -> (&'static Tokenizer, &'static crate::constraint::Grammars) {
    use crate::constraint::Grammars;
    use std::sync::OnceLock;

    const VOCABS: [u8; 3] = [0, 2, 5];
    static GRAMMARS: OnceLock<Vec<Grammars>> = OnceLock::new();
    let grammars = GRAMMARS.get_or_init(|| {
        VOCABS
            .iter()
            .map(|&v| Grammars::new(vocabs::shared(v).0.clone()))
            .collect()
    });
    let i = i % VOCABS.len();
    (vocabs::get(VOCABS[i]).0, &grammars[i])
}

/// Tool calling: the first byte picks the format (the six styles) and the choice, then
/// NUL-separated parts: tool definitions (a JSON array; anything else gives two fixed
/// tools), then the pieces of the model's answer as they stream. Definitions and
/// choices are read or refused with a message; a format's constraint compiles for tools
/// that were accepted; `parse` names only offered functions with object arguments; and
/// the streamed text (what [`ToolStream`] lets out as it comes, then the rest of the
/// parsed content) is the parsed content, never showing a call's opening mark early.
///
/// [`ToolStream`]: crate::tools::ToolStream
pub fn tool_calls(data: &[u8]) {
    use crate::tools::{parse_choice, parse_tools, Style, ToolSetup, ToolStream};
    use serde_json::{json, Value};

    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.split('\0');
    let (defs, custom) = match serde_json::from_str::<Value>(parts.next().unwrap_or_default()) {
        Ok(Value::Array(a)) => (a, true),
        _ => (
            vec![
                json!({"type": "function", "function": {"name": "get_weather", "parameters":
                {"type": "object", "properties": {"city": {"type": "string"}},
                 "required": ["city"]}}}),
                json!({"function": {"name": "a.b-c_1"}}),
            ],
            false,
        ),
    };
    let tools = match parse_tools(&defs) {
        Ok(t) => t,
        Err(e) => {
            assert!(!e.0.is_empty());
            return;
        }
    };
    let style = [
        Style::Generic,
        Style::Hermes,
        Style::Llama3,
        Style::Mistral,
        Style::Harmony,
        Style::Gemma4,
    ][usize::from(flags & 7) % 6];
    let choice_json = match (flags >> 3) & 3 {
        0 => Value::Null,
        1 => json!("none"),
        2 => json!("required"),
        _ => json!({"type": "function", "function": {"name":
            tools.first().map_or("x", |t| t.name.as_str())}}),
    };
    let choice = match parse_choice(Some(&choice_json), &tools) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.0.is_empty());
            return;
        }
    };
    let setup = ToolSetup {
        tools,
        choice,
        style,
    };
    if flags & 0x20 != 0 {
        if let Some(format) = setup.constraint() {
            // The byte-level BPE vocabulary, shared with the constraint target.
            if let Err(e) = grammar_vocab(2).1.constraint(&format) {
                // A client's schema may be one llguidance refuses; the fixed tools' not.
                assert!(custom, "the fixed tools' {style:?} constraint: {e}");
            }
        }
    }
    let pieces: Vec<&str> = parts.collect();
    let answer: String = pieces.concat();
    let (content, calls) = setup.parse(&answer);
    for c in &calls {
        assert!(setup.active(), "a call without tools offered");
        assert!(setup.tools.iter().any(|t| t.name == c.name), "{c:?}");
        assert!(c.arguments.is_object(), "{c:?}");
    }
    if !setup.active() {
        assert_eq!(content, answer);
    }
    let mut stream = ToolStream::new(&setup);
    let mut sent = String::new();
    for p in &pieces {
        let now = stream.push(p);
        if style == Style::Hermes {
            assert!(
                !(sent.clone() + &now).contains("<tool_call>"),
                "{sent:?} {now:?}"
            );
        }
        sent += &now;
    }
    let streamed = sent + &stream.rest_of(&content);
    assert_eq!(
        streamed.trim(),
        content.trim(),
        "streamed {streamed:?} for content {content:?}"
    );
}

/// Model names and pull specs (the CLI's and `/api/pull`'s arguments, ollama's names,
/// a Hugging Face repository listing): the input is NUL-separated text, each part tried
/// as a name, a spec and an ollama name, and the last part also as a listing (JSON).
/// A name that parses is safe as two path components and reads back as itself;
/// sanitized text always makes a valid piece; a spec points where its text says and
/// its name is the one `name_for_spec` gives; the GGUF picked from a listing is a GGUF
/// file that matches the asked quantization.
#[cfg(not(target_arch = "wasm32"))]
pub fn model_names(data: &[u8]) {
    use crate::store::external::ollama_key;
    use crate::store::spec::{
        is_hf_spec, is_split_part, name_for_spec, parse_spec, pick_gguf, Source, TreeEntry, ALIASES,
    };
    use crate::store::ModelName;

    fn safe_piece(p: &str) {
        let first = p.chars().next().unwrap_or('-');
        assert!(
            first.is_ascii_lowercase() || first.is_ascii_digit(),
            "piece {p:?}"
        );
        assert!(
            p.len() <= crate::store::MAX_PIECE
                && !p.contains("..")
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)),
            "piece {p:?}"
        );
    }
    fn valid(n: &ModelName) {
        safe_piece(n.family());
        safe_piece(n.tag());
        assert_eq!(ModelName::parse(&n.to_string()).ok().as_ref(), Some(n));
    }

    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.split('\0').collect();
    for s in &parts {
        if let Ok(n) = ModelName::parse(s) {
            valid(&n);
        }
        let p = ModelName::sanitize_piece(s);
        safe_piece(&p);
        match parse_spec(s) {
            Ok((source, name)) => {
                valid(&name);
                match source {
                    Source::Hf { owner, repo, quant } => {
                        let alias = ALIASES.iter().any(|(a, _)| *a == name.to_string());
                        assert!(is_hf_spec(s.trim()) || alias, "{s:?}");
                        for piece in [Some(&owner), Some(&repo), quant.as_ref()]
                            .into_iter()
                            .flatten()
                        {
                            assert!(
                                !piece.is_empty()
                                    && !piece.contains("..")
                                    && !piece.starts_with('.')
                                    && piece
                                        .chars()
                                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                                "{s:?}: piece {piece:?}"
                            );
                        }
                        if is_hf_spec(s) {
                            assert_eq!(name_for_spec(s).ok(), Some(name), "{s:?}");
                        }
                    }
                    Source::Url(u) => {
                        let l = u.to_ascii_lowercase();
                        assert!(
                            l.starts_with("https://") || l.starts_with("http://"),
                            "{u:?}"
                        );
                    }
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        if let Ok(n) = name_for_spec(s) {
            valid(&n);
        }
        if let Some(key) = ollama_key(s) {
            for piece in &key {
                assert!(
                    !piece.is_empty()
                        && !piece.contains("..")
                        && !piece.contains('/')
                        && !piece.contains('\\')
                        && *piece == piece.to_ascii_lowercase(),
                    "{s:?}: {key:?}"
                );
            }
        }
        let _ = is_split_part(s);
    }
    let listing = parts.last().copied().unwrap_or_default();
    if let Ok(files) = serde_json::from_str::<Vec<TreeEntry>>(listing) {
        for quant in [None, Some("Q4_K_M"), Some(parts[0])] {
            if let Some(f) = pick_gguf(&files, quant) {
                let base = f.path.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
                assert!(f.kind != "directory" && base.ends_with(".gguf"), "{f:?}");
                assert!(!base.starts_with("mmproj"), "{f:?}");
                if let Some(q) = quant {
                    assert!(
                        base.to_ascii_uppercase().contains(&q.to_ascii_uppercase()),
                        "{f:?} for {q:?}"
                    );
                }
            }
        }
    }
}
