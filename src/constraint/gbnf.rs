//! llama.cpp's GBNF grammars, rewritten in llguidance's Lark syntax.
//!
//! GBNF: `name ::= alternatives`, where an item is a `"literal"`, a `[character class]`
//! (`^` negates), `.` (any character), a rule name or a parenthesized group, each
//! optionally followed by `*`, `+`, `?` or `{m}`, `{m,}`, `{m,n}`, `{,n}`; `#` starts a
//! comment; the start rule is `root`. Literals become JSON-escaped Lark strings,
//! classes and `.` become regular expressions of one character, and rule names become
//! `g-<index>` (GBNF allows capitals and names Lark reserves for terminals).

use super::ConstraintError;
use std::collections::HashMap;
use std::fmt::Write;

/// Most rules, and deepest nesting of groups, in one grammar.
const MAX_RULES: usize = 4096;
const MAX_DEPTH: usize = 64;

fn err(line: usize, msg: impl std::fmt::Display) -> ConstraintError {
    ConstraintError::Invalid(format!("GBNF grammar, line {line}: {msg}"))
}

/// `text` (GBNF) as a Lark grammar whose `start` is GBNF's `root`.
pub fn gbnf_to_lark(text: &str) -> Result<String, ConstraintError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
        names: HashMap::new(),
        order: Vec::new(),
        defined: Vec::new(),
        depth: 0,
    };
    let mut rules = Vec::new();
    p.skip_space(true);
    while p.i < p.s.len() {
        let line = p.line();
        let name = p.name().ok_or_else(|| err(line, "expected a rule name"))?;
        p.skip_space(false);
        if !p.eat("::=") {
            return Err(err(line, format!("expected `::=` after `{name}`")));
        }
        let id = p.rule_id(name, line)?;
        if p.defined[id] {
            return Err(err(line, format!("rule `{name}` is defined twice")));
        }
        p.defined[id] = true;
        let body = p.alternatives(false)?;
        rules.push((id, body));
        p.skip_space(true);
    }
    let Some(&root) = p.names.get("root") else {
        return Err(ConstraintError::Invalid(
            "GBNF grammar: there is no `root` rule".into(),
        ));
    };
    if let Some(i) = p.defined.iter().position(|d| !d) {
        return Err(ConstraintError::Invalid(format!(
            "GBNF grammar: rule `{}` is used but never defined",
            p.order[i]
        )));
    }
    let mut out = format!("start: g-{root}\n");
    for (id, body) in rules {
        let _ = writeln!(out, "g-{id}: {body}");
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    names: HashMap<&'a str, usize>,
    order: Vec<&'a str>,
    defined: Vec<bool>,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn line(&self) -> usize {
        1 + self.s[..self.i.min(self.s.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, t: &str) -> bool {
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    /// Skips blanks and comments; newlines too when `newlines` (between rules, inside
    /// groups, or where the next line continues the rule).
    fn skip_space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'\n' if newlines => self.i += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            self.i += 1;
        }
        (self.i > start).then(|| &self.text[start..self.i])
    }

    fn rule_id(&mut self, name: &'a str, line: usize) -> Result<usize, ConstraintError> {
        if let Some(&id) = self.names.get(name) {
            return Ok(id);
        }
        if self.order.len() >= MAX_RULES {
            return Err(err(line, format!("more than {MAX_RULES} rules")));
        }
        let id = self.order.len();
        self.names.insert(name, id);
        self.order.push(name);
        self.defined.push(false);
        Ok(id)
    }

    /// Whether a new rule starts here (`name ::=`), which ends the current one.
    fn at_rule_start(&self) -> bool {
        let mut j = self.i;
        while j < self.s.len()
            && (self.s[j].is_ascii_alphanumeric() || self.s[j] == b'-' || self.s[j] == b'_')
        {
            j += 1;
        }
        if j == self.i {
            return false;
        }
        while j < self.s.len() && (self.s[j] == b' ' || self.s[j] == b'\t') {
            j += 1;
        }
        self.s[j..].starts_with(b"::=")
    }

    /// `seq | seq | ...` up to the end of the rule (or the closing parenthesis when
    /// `nested`).
    fn alternatives(&mut self, nested: bool) -> Result<String, ConstraintError> {
        let mut alts = vec![self.sequence(nested)?];
        while self.eat("|") {
            alts.push(self.sequence(nested)?);
        }
        Ok(alts.join(" | "))
    }

    fn sequence(&mut self, nested: bool) -> Result<String, ConstraintError> {
        let mut items: Vec<String> = Vec::new();
        loop {
            // A rule's body may continue on the next line; a new `name ::=` ends it.
            let before = self.i;
            self.skip_space(false);
            if self.peek() == Some(b'\n') {
                self.skip_space(true);
                if !nested && (self.i >= self.s.len() || self.at_rule_start()) {
                    break;
                }
            }
            let _ = before;
            let line = self.line();
            let Some(c) = self.peek() else {
                if nested {
                    return Err(err(line, "unclosed `(`"));
                }
                break;
            };
            let atom = match c {
                b'|' => break,
                b')' if nested => break,
                b')' => return Err(err(line, "unmatched `)`")),
                b'"' => self.literal()?,
                b'[' => self.class()?,
                b'.' => {
                    self.i += 1;
                    "/(?s:.)/".to_string()
                }
                b'(' => {
                    self.i += 1;
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(err(line, format!("groups nest deeper than {MAX_DEPTH}")));
                    }
                    self.skip_space(true);
                    let inner = self.alternatives(true)?;
                    self.skip_space(true);
                    if !self.eat(")") {
                        return Err(err(self.line(), "unclosed `(`"));
                    }
                    self.depth -= 1;
                    format!("({inner})")
                }
                b'<' | b'!' => {
                    return Err(err(
                        line,
                        "token references (`<...>`) are not supported; spell the text",
                    ))
                }
                _ if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' => {
                    if self.at_rule_start() && !nested {
                        break;
                    }
                    let name = self.name().unwrap_or_default();
                    let id = self.rule_id(name, line)?;
                    format!("g-{id}")
                }
                _ => {
                    return Err(err(
                        line,
                        format!(
                            "unexpected `{}`",
                            self.text[self.i..].chars().next().unwrap_or('?')
                        ),
                    ))
                }
            };
            let atom = self.repetition(atom)?;
            items.push(atom);
        }
        Ok(if items.is_empty() {
            "\"\"".to_string()
        } else {
            items.join(" ")
        })
    }

    /// A postfix `*`, `+`, `?` or `{m,n}` on `atom`.
    fn repetition(&mut self, atom: String) -> Result<String, ConstraintError> {
        let line = self.line();
        match self.peek() {
            Some(c @ (b'*' | b'+' | b'?')) => {
                self.i += 1;
                Ok(format!("{atom}{}", c as char))
            }
            Some(b'{') => {
                self.i += 1;
                let close = self.s[self.i..]
                    .iter()
                    .position(|&b| b == b'}')
                    .ok_or_else(|| err(line, "unclosed `{`"))?;
                let inside = self.text[self.i..self.i + close].replace([' ', '\t'], "");
                self.i += close + 1;
                let num = |s: &str| -> Result<Option<u32>, ConstraintError> {
                    if s.is_empty() {
                        return Ok(None);
                    }
                    s.parse::<u32>()
                        .map(Some)
                        .map_err(|_| err(line, format!("bad repetition count `{s}`")))
                };
                let (min, max) = match inside.split_once(',') {
                    None => {
                        let n = num(&inside)?.ok_or_else(|| err(line, "empty `{}`"))?;
                        (n, Some(n))
                    }
                    Some((a, b)) => (num(a)?.unwrap_or(0), num(b)?),
                };
                if max.is_some_and(|m| m < min) {
                    return Err(err(line, format!("repetition {{{inside}}}: max below min")));
                }
                if min > 10_000 || max.is_some_and(|m| m > 10_000) {
                    return Err(err(line, "repetition counts above 10000"));
                }
                Ok(match max {
                    Some(0) => "\"\"".to_string(),
                    Some(m) => format!("{atom}{{{min},{m}}}"),
                    None => format!("{atom}{{{min},}}"),
                })
            }
            _ => Ok(atom),
        }
    }

    /// One character of a literal or class after a backslash.
    fn escape(&mut self, line: usize) -> Result<char, ConstraintError> {
        let c = self.peek().ok_or_else(|| err(line, "unfinished escape"))?;
        self.i += 1;
        let hex = |p: &mut Self, n: usize| -> Result<char, ConstraintError> {
            let h = p
                .text
                .get(p.i..p.i + n)
                .ok_or_else(|| err(line, "short hex escape"))?;
            p.i += n;
            u32::from_str_radix(h, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| err(line, format!("bad escape `{h}`")))
        };
        Ok(match c {
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'0' => '\0',
            b'x' => hex(self, 2)?,
            b'u' => hex(self, 4)?,
            b'U' => hex(self, 8)?,
            b'\\' | b'"' | b'[' | b']' | b'-' | b'^' => c as char,
            _ => return Err(err(line, format!("unknown escape `\\{}`", c as char))),
        })
    }

    /// The next character of the text (not a backslash escape).
    fn char(&mut self, line: usize) -> Result<char, ConstraintError> {
        let c = self.text[self.i..]
            .chars()
            .next()
            .ok_or_else(|| err(line, "unexpected end"))?;
        self.i += c.len_utf8();
        if c == '\\' {
            self.escape(line)
        } else {
            Ok(c)
        }
    }

    fn literal(&mut self) -> Result<String, ConstraintError> {
        let line = self.line();
        self.i += 1;
        let mut v = String::new();
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(err(line, "unclosed string")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                _ => v.push(self.char(line)?),
            }
        }
        Ok(serde_json::Value::String(v).to_string())
    }

    fn class(&mut self) -> Result<String, ConstraintError> {
        let line = self.line();
        self.i += 1;
        let mut out = String::from("/[");
        if self.peek() == Some(b'^') {
            self.i += 1;
            out.push('^');
        }
        let mut empty = true;
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(err(line, "unclosed `[`")),
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                _ => {
                    let a = self.char(line)?;
                    let _ = write!(out, "\\x{{{:x}}}", a as u32);
                    if self.peek() == Some(b'-') && self.s.get(self.i + 1) != Some(&b']') {
                        self.i += 1;
                        let b = self.char(line)?;
                        if b < a {
                            return Err(err(line, format!("range {a:?}-{b:?} is reversed")));
                        }
                        let _ = write!(out, "-\\x{{{:x}}}", b as u32);
                    }
                    empty = false;
                }
            }
        }
        if empty {
            return Err(err(line, "empty character class"));
        }
        out.push_str("]/");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_literals_classes_and_repetitions() {
        let g = "root ::= \"yes\" | \"no\" ws num\n# comment\nws ::= [ \\t]*\nnum ::= [0-9]{1,3} (\".\" [0-9]+)?";
        let l = gbnf_to_lark(g).unwrap();
        assert_eq!(
            l,
            "start: g-0\ng-0: \"yes\" | \"no\" g-1 g-2\ng-1: /[\\x{20}\\x{9}]/*\ng-2: /[\\x{30}-\\x{39}]/{1,3} (\".\" /[\\x{30}-\\x{39}]/+)?\n"
        );
    }

    #[test]
    fn multi_line_bodies_and_escapes() {
        let g = "root ::= (\n  \"a\\n\" |\n  \"\\\"\"\n)\n  item\nitem ::= [^\\x00-\\x1f\"]";
        let l = gbnf_to_lark(g).unwrap();
        assert!(l.contains("g-0: (\"a\\n\" | \"\\\"\") g-1"), "{l}");
        assert!(l.contains("g-1: /[^\\x{0}-\\x{1f}\\x{22}]/"), "{l}");
    }

    #[test]
    fn bad_grammars_are_refused_by_line() {
        for (g, want) in [
            ("main ::= \"x\"", "no `root`"),
            ("root ::= missing", "never defined"),
            ("root ::= \"x", "unclosed string"),
            ("root ::= (\"x\"", "unclosed `(`"),
            ("root ::= [z-a]", "reversed"),
            ("root ::= \"x\"{3,1}", "max below min"),
            ("root ::= \"x\"\nroot ::= \"y\"", "defined twice"),
            ("root ::= <[1000]>", "token references"),
            ("root ::= \"\\q\"", "unknown escape"),
        ] {
            let e = gbnf_to_lark(g).unwrap_err().to_string();
            assert!(e.contains(want), "{g}: {e}");
        }
    }
}
