//! Print the deep stage's WordPiece ids of each row's `text` (one JSON array
//! per line), to compare the tokenizer with a reference implementation:
//!
//! ```text
//! cargo run --release -p keyward-detect --example shield_tokenize -- FILE.jsonl > ids.jsonl
//! python3 training/shield/check_tokenizer.py FILE.jsonl ids.jsonl
//! ```

use keyward_detect::shield::Pipeline;
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args().nth(1).ok_or("usage: shield_tokenize FILE.jsonl")?;
    let pipeline = Pipeline::builtin()?;
    let deep = pipeline.deep.as_ref().ok_or("this build has no deep-stage weights")?;
    for line in std::fs::read_to_string(path)?.lines().filter(|l| !l.trim().is_empty()) {
        let row: serde_json::Value = serde_json::from_str(line)?;
        let text = row.get("text").and_then(|t| t.as_str()).unwrap_or("");
        println!("{}", serde_json::Value::from(deep.tokenizer().encode(text)));
    }
    Ok(())
}
