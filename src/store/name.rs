//! Model names (`family:tag`) and their validation. A valid name is safe to use as two
//! path components, so nothing else in the store needs to re-check it.

use super::StoreError;
use std::fmt;

/// Longest family or tag accepted.
pub const MAX_PIECE: usize = 80;

/// A validated model name: `family:tag`, both pieces `[a-z0-9][a-z0-9._-]*`, lowercase.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelName {
    family: String,
    tag: String,
}

impl ModelName {
    /// Parses `family[:tag]` (tag defaults to `latest`). Uppercase letters are folded to
    /// lowercase; anything else outside `[a-z0-9._-]`, a piece not starting with a letter
    /// or digit, `..`, or a piece longer than [`MAX_PIECE`] is an error.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::BadName {
            name: shorten(s),
            why: why.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty name"));
        }
        let (family, tag) = match s.split_once(':') {
            Some((f, t)) => (f, t),
            None => (s, "latest"),
        };
        if tag.contains(':') {
            return Err(bad("more than one ':'"));
        }
        for (what, piece) in [("family", family), ("tag", tag)] {
            if piece.is_empty() {
                return Err(bad(&format!("empty {what}")));
            }
            if piece.len() > MAX_PIECE {
                return Err(bad(&format!("{what} longer than {MAX_PIECE} characters")));
            }
            if piece.contains('/') || piece.contains('\\') {
                return Err(bad("names hold no path separators"));
            }
            if piece.contains("..") {
                return Err(bad("names hold no '..'"));
            }
            let mut chars = piece.chars();
            let first = chars.next().unwrap_or('-');
            if !first.is_ascii_alphanumeric() {
                return Err(bad(&format!("{what} must start with a letter or digit")));
            }
            if let Some(c) = piece
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                return Err(bad(&format!(
                    "character {c:?} not allowed (use a-z, 0-9, '.', '_', '-')"
                )));
            }
        }
        Ok(Self {
            family: family.to_ascii_lowercase(),
            tag: tag.to_ascii_lowercase(),
        })
    }

    /// The part before `:`.
    pub fn family(&self) -> &str {
        &self.family
    }

    /// The part after `:` (`latest` when none was given).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Turns free text (a repository or file name) into a valid piece: lowercase, every
    /// disallowed character replaced by `-`, leading punctuation dropped, bounded length.
    pub fn sanitize_piece(s: &str) -> String {
        let mut out: String = s
            .chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        while out.contains("..") {
            out = out.replace("..", ".");
        }
        let out = out.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        let mut out: String = out.chars().take(MAX_PIECE).collect();
        if out.is_empty() {
            out.push_str("model");
        }
        out
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.family, self.tag)
    }
}

/// Whether `s` is one piece of a repository or registry path (an owner, repository,
/// tag, host or commit) at most `max` bytes long: letters, digits, `.`, `_` and `-`, not
/// starting with `.` and without `..`, so it is also safe as a path component.
pub(crate) fn path_piece_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && !s.starts_with('.')
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A name quoted in an error, cut so a hostile 1 MB argument does not flood the terminal.
fn shorten(s: &str) -> String {
    if s.chars().count() > 100 {
        let head: String = s.chars().take(100).collect();
        format!("{head}…")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        let n = ModelName::parse("gemma3:270m").unwrap();
        assert_eq!((n.family(), n.tag()), ("gemma3", "270m"));
        assert_eq!(
            ModelName::parse("Qwen3").unwrap().to_string(),
            "qwen3:latest"
        );
        assert!(ModelName::parse("llama3.2:1b-q4_k_m").is_ok());
    }

    #[test]
    fn invalid_names() {
        for s in [
            "", "../x", "/abs", "a/b", "a\\b", "x:", ":x", "a:b:c", ".hidden", "a..b", "a b", "-x",
            "x:-y", "é",
        ] {
            assert!(ModelName::parse(s).is_err(), "{s:?} accepted");
        }
        assert!(ModelName::parse(&"a".repeat(MAX_PIECE + 1)).is_err());
        assert!(ModelName::parse(&"a".repeat(MAX_PIECE)).is_ok());
    }

    #[test]
    fn sanitize() {
        assert_eq!(
            ModelName::sanitize_piece("Gemma-3-270M-it-GGUF"),
            "gemma-3-270m-it-gguf"
        );
        assert_eq!(ModelName::sanitize_piece("..//x y"), "x-y");
        assert!(ModelName::parse(&ModelName::sanitize_piece(&"Z".repeat(500))).is_ok());
    }
}
