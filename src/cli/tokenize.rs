//! `hearth tokenize MODEL TEXT`: the ids (and pieces) the model's tokenizer gives, like
//! llama.cpp's tokenize tool. Needs no GPU.

use super::load::{open_gguf, resolve_model};
use crate::tokenizer::Tokenizer;
use std::path::Path;

/// Arguments of `hearth tokenize`.
#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// A GGUF file, a store name (gemma3:270m-base) or hf.co/OWNER/REPO[:QUANT]
    model: String,
    /// Text to tokenize
    text: String,
    /// Add no BOS/EOS and read special-token spellings as plain text
    #[arg(long)]
    no_special: bool,
    /// Print a JSON array of {"id", "piece"} objects
    #[arg(long)]
    json: bool,
}

/// Tokenizes and prints one line per token (or JSON).
pub fn run(args: &TokenizeArgs, models: Option<&Path>) -> anyhow::Result<()> {
    let path = resolve_model(&args.model, models)?;
    let f = open_gguf(&path)?;
    let tok = Tokenizer::from_gguf(&f)?;
    let special = !args.no_special;
    let ids = tok.encode(&args.text, special, special)?;
    let piece = |id: u32| String::from_utf8_lossy(&tok.token_bytes(id, true)).into_owned();
    if args.json {
        let items: Vec<serde_json::Value> = ids
            .iter()
            .map(|&id| serde_json::json!({ "id": id, "piece": piece(id) }))
            .collect();
        println!("{}", serde_json::Value::Array(items));
    } else {
        for &id in &ids {
            println!("{id:>6} -> {:?}", piece(id));
        }
    }
    Ok(())
}
