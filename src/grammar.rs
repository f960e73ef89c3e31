//! An independent JSON recognizer: a byte-level pushdown recognizer of JSON text whose
//! root is an object. Constrained decoding runs on llguidance (`constraint`); this
//! hand-written recognizer stays as a second opinion that tests and the fuzzer use to
//! check that what the engine let through is a valid JSON prefix. Whitespace runs
//! outside strings are bounded (as the engine bounds them).

/// Most nested objects and arrays.
const MAX_DEPTH: usize = 64;
/// Longest run of whitespace outside strings: the engine's JSON whitespace is one space,
/// or one or two newlines and up to 20 spaces or tabs (`constraint`).
pub const MAX_SPACE_RUN: usize = 22;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

impl Num {
    /// Whether the number may end here.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::Exp)
    }

    fn next(self, b: u8) -> Option<Num> {
        use Num::*;
        Some(match (self, b) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Int,
            (Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') => E,
            (E, b'+' | b'-') => ESign,
            (E | ESign | Exp, b'0'..=b'9') => Exp,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the root object.
    Start,
    /// A value must come (after `:` or `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// Inside a string; `key` tells what follows it, `escape` counts pending escape bytes
    /// (1 after a backslash, 1..=4 hex digits of `\u`).
    Str {
        key: bool,
        escape: u8,
        unicode: bool,
    },
    /// Inside a number.
    Number(Num),
    /// Inside `true`, `false` or `null`: the bytes still expected.
    Literal(&'static [u8]),
    /// After a value: `,` or the container's closer.
    AfterValue,
    /// The root object is closed.
    Done,
}

/// The recognizer: cheap to clone, so candidates are tried on copies.
#[derive(Clone, Debug)]
pub struct JsonGrammar {
    stack: Vec<Container>,
    state: State,
    spaces: usize,
}

impl Default for JsonGrammar {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonGrammar {
    /// Nothing consumed yet: the output must be one JSON object.
    pub fn new() -> Self {
        Self {
            stack: Vec::new(),
            state: State::Start,
            spaces: 0,
        }
    }

    /// Whether the root object has been closed.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes `bytes` if they keep the text a valid prefix; on `false` the state is
    /// unspecified (try candidates on a clone).
    pub fn advance(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.byte(b))
    }

    /// Whether `bytes` keep the text a valid prefix, without consuming them.
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        self.clone().advance(bytes)
    }

    fn value_done(&mut self) {
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::AfterValue
        };
    }

    fn open(&mut self, c: Container) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            return false;
        }
        self.stack.push(c);
        self.state = match c {
            Container::Object => State::KeyOrClose,
            Container::Array => State::ValueOrClose,
        };
        true
    }

    fn close(&mut self, c: Container) -> bool {
        if self.stack.pop() != Some(c) {
            return false;
        }
        self.value_done();
        true
    }

    /// The first byte of a value.
    fn start_value(&mut self, b: u8) -> bool {
        match b {
            b'{' => self.open(Container::Object),
            b'[' => self.open(Container::Array),
            b'"' => {
                self.state = State::Str {
                    key: false,
                    escape: 0,
                    unicode: false,
                };
                true
            }
            b'-' => {
                self.state = State::Number(Num::Minus);
                true
            }
            b'0' => {
                self.state = State::Number(Num::Zero);
                true
            }
            b'1'..=b'9' => {
                self.state = State::Number(Num::Int);
                true
            }
            b't' => {
                self.state = State::Literal(b"rue");
                true
            }
            b'f' => {
                self.state = State::Literal(b"alse");
                true
            }
            b'n' => {
                self.state = State::Literal(b"ull");
                true
            }
            _ => false,
        }
    }

    fn byte(&mut self, b: u8) -> bool {
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let in_token = matches!(
            self.state,
            State::Str { .. } | State::Number(_) | State::Literal(_)
        );
        if space && !in_token {
            self.spaces += 1;
            return self.spaces <= MAX_SPACE_RUN;
        }
        if !in_token {
            self.spaces = 0;
        }
        match self.state {
            State::Start => b == b'{' && self.open(Container::Object),
            State::Value => self.start_value(b),
            State::ValueOrClose => {
                (b == b']' && self.close(Container::Array)) || self.start_value(b)
            }
            State::KeyOrClose | State::Key => {
                if b == b'"' {
                    self.state = State::Str {
                        key: true,
                        escape: 0,
                        unicode: false,
                    };
                    true
                } else {
                    self.state == State::KeyOrClose && b == b'}' && self.close(Container::Object)
                }
            }
            State::Colon => {
                self.state = State::Value;
                b == b':'
            }
            State::Str {
                key,
                escape,
                unicode,
            } => self.string_byte(b, key, escape, unicode),
            State::Number(n) => match n.next(b) {
                Some(m) => {
                    self.state = State::Number(m);
                    true
                }
                None if n.complete() => {
                    self.value_done();
                    self.byte(b)
                }
                None => false,
            },
            State::Literal(rest) => {
                if rest.first() != Some(&b) {
                    return false;
                }
                if rest.len() == 1 {
                    self.value_done();
                } else {
                    self.state = State::Literal(&rest[1..]);
                }
                true
            }
            State::AfterValue => match (b, self.stack.last()) {
                (b',', Some(Container::Object)) => {
                    self.state = State::Key;
                    true
                }
                (b',', Some(Container::Array)) => {
                    self.state = State::Value;
                    true
                }
                (b'}', _) => self.close(Container::Object),
                (b']', _) => self.close(Container::Array),
                _ => false,
            },
            State::Done => false,
        }
    }

    fn string_byte(&mut self, b: u8, key: bool, escape: u8, unicode: bool) -> bool {
        let set = |s: &mut Self, escape, unicode| {
            s.state = State::Str {
                key,
                escape,
                unicode,
            };
            true
        };
        if unicode {
            if !b.is_ascii_hexdigit() {
                return false;
            }
            return set(self, escape - 1, escape > 1);
        }
        if escape > 0 {
            return match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => set(self, 0, false),
                b'u' => set(self, 4, true),
                _ => false,
            };
        }
        match b {
            b'"' => {
                if key {
                    self.state = State::Colon;
                } else {
                    self.value_done();
                }
                true
            }
            b'\\' => set(self, 1, false),
            0..=0x1f => false,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_prefix(s: &str) -> bool {
        JsonGrammar::new().accepts(s.as_bytes())
    }

    fn complete(s: &str) -> bool {
        let mut g = JsonGrammar::new();
        g.advance(s.as_bytes()) && g.is_complete()
    }

    #[test]
    fn accepts_json_objects_and_their_prefixes() {
        for s in [
            r#"{}"#,
            r#"{"a": 1}"#,
            r#" { "a" : [1, -2.5e+3, 0, true, false, null, "x\"\u00e9\\"], "b": {"c": []} }"#,
            r#"{"name":"Zoë","n":[[],[{}]]}"#,
        ] {
            assert!(complete(s), "{s}");
            assert!(serde_json::from_str::<serde_json::Value>(s).is_ok(), "{s}");
            for i in 0..s.len() {
                if s.is_char_boundary(i) {
                    assert!(valid_prefix(&s[..i]), "prefix {:?}", &s[..i]);
                }
            }
        }
        assert!(!complete(r#"{"a": 1"#));
    }

    #[test]
    fn rejects_what_is_not_json() {
        for s in [
            "[1]",
            "\"x\"",
            "{'a': 1}",
            "{\"a\" 1}",
            "{\"a\": 01}",
            "{\"a\": 1.}x",
            "{\"a\": tru }",
            "{\"a\": [1,]}",
            "{\"a\": 1,}",
            "{\"a\": \"\u{1}\"}",
            "{\"a\": \"\\x\"}",
            "{\"a\": \"\\u12g4\"}",
            "{} {}",
            "{\"a\": 1]",
            "hello",
        ] {
            assert!(!valid_prefix(s), "{s:?} accepted");
        }
        let deep = "{\"a\":".to_string() + &"[".repeat(MAX_DEPTH);
        assert!(!valid_prefix(&deep));
        assert!(!valid_prefix(&format!(
            "{{{}",
            " ".repeat(MAX_SPACE_RUN + 1)
        )));
    }
}
