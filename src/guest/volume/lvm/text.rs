//! The LVM2 text metadata format (`vg { id = "..." seqno = 3 physical_volumes { ... } }`):
//! sections, `key = value` assignments, values that are integers, strings or flat lists,
//! and `#` comments.
//!
//! Hostile input: the text is bounded in size, nesting and item count, and the parser keeps
//! its own stack instead of recursing, so no input can exhaust the call stack.

use crate::guest::error::{GuestError, GuestResult};

/// Largest metadata text accepted (LVM's own default metadata area is 1 MiB).
pub const MAX_TEXT: usize = 1 << 20;
/// Deepest section nesting accepted (LVM writes 4: vg, logical_volumes, lv, segment).
pub const MAX_DEPTH: usize = 16;
/// Most assignments, sections and list items in one text.
pub const MAX_ITEMS: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str(String),
    /// A number LVM may write that is not an integer (a float): kept as written.
    Other(String),
    /// `[ ... ]`: LVM's lists hold scalars only.
    List(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Value(Value),
    Section(Section),
}

/// `name { ... }`: entries in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub entries: Vec<(String, Node)>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }

    pub fn section(&self, key: &str) -> Option<&Section> {
        match self.get(key)? {
            Node::Section(s) => Some(s),
            Node::Value(_) => None,
        }
    }

    pub fn value(&self, key: &str) -> Option<&Value> {
        match self.get(key)? {
            Node::Value(v) => Some(v),
            Node::Section(_) => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.value(key)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.value(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn list(&self, key: &str) -> Option<&[Value]> {
        match self.value(key)? {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The sub-sections, in order, with their names.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.entries.iter().filter_map(|(k, n)| match n {
            Node::Section(s) => Some((k.as_str(), s)),
            Node::Value(_) => None,
        })
    }
}

fn corrupt(offset: usize, detail: impl Into<String>) -> GuestError {
    GuestError::Corrupt {
        structure: "LVM metadata text",
        offset: offset as u64,
        detail: detail.into(),
    }
}

struct Lexer<'a> {
    text: &'a [u8],
    pos: usize,
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(String),
    Equals,
    Open,
    Close,
    ListOpen,
    ListClose,
    Comma,
    End,
}

fn is_ident_byte(b: u8) -> bool {
    !b.is_ascii_whitespace() && !b"={}[]\",#".contains(&b) && b != 0
}

impl Lexer<'_> {
    fn skip_space_and_comments(&mut self) {
        while let Some(&b) = self.text.get(self.pos) {
            if b.is_ascii_whitespace() {
                self.pos += 1;
            } else if b == b'#' {
                while self.text.get(self.pos).is_some_and(|&c| c != b'\n') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn next(&mut self) -> GuestResult<(usize, Token)> {
        self.skip_space_and_comments();
        let start = self.pos;
        // The text ends at the end of the buffer or at a NUL (LVM stores it NUL-terminated).
        let Some(&b) = self.text.get(self.pos).filter(|&&b| b != 0) else {
            return Ok((start, Token::End));
        };
        self.pos += 1;
        let token = match b {
            b'=' => Token::Equals,
            b'{' => Token::Open,
            b'}' => Token::Close,
            b'[' => Token::ListOpen,
            b']' => Token::ListClose,
            b',' => Token::Comma,
            b'"' => Token::Str(self.string(start)?),
            _ => {
                while self.text.get(self.pos).is_some_and(|&c| is_ident_byte(c)) {
                    self.pos += 1;
                }
                let raw = String::from_utf8_lossy(&self.text[start..self.pos]).into_owned();
                if b == b'-' || b.is_ascii_digit() {
                    Token::Number(raw)
                } else {
                    Token::Ident(raw)
                }
            }
        };
        Ok((start, token))
    }

    /// A double-quoted string; `\x` stands for `x`.
    fn string(&mut self, start: usize) -> GuestResult<String> {
        let mut out = Vec::new();
        loop {
            match self.text.get(self.pos) {
                None | Some(0) => return Err(corrupt(start, "unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    let escaped = self.text.get(self.pos + 1).copied();
                    let Some(c) = escaped.filter(|&c| c != 0) else {
                        return Err(corrupt(start, "unterminated string"));
                    };
                    out.push(c);
                    self.pos += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

fn scalar(offset: usize, token: Token) -> GuestResult<Value> {
    match token {
        Token::Str(s) => Ok(Value::Str(s)),
        Token::Number(n) => Ok(match n.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Other(n),
        }),
        other => Err(corrupt(
            offset,
            format!("expected a value, found {other:?}"),
        )),
    }
}

/// Parses a whole metadata text into its top-level section.
pub fn parse(text: &[u8]) -> GuestResult<Section> {
    if text.len() > MAX_TEXT {
        return Err(GuestError::Limit(format!(
            "LVM metadata text of {} bytes exceeds the {MAX_TEXT}-byte limit",
            text.len()
        )));
    }
    let mut lexer = Lexer { text, pos: 0 };
    // Open sections, innermost last, each with the name it will be stored under.
    let mut stack: Vec<(String, Section)> = vec![(String::new(), Section::default())];
    let mut items = 0usize;
    loop {
        let (offset, token) = lexer.next()?;
        items += 1;
        if items > MAX_ITEMS {
            return Err(GuestError::Limit(format!(
                "LVM metadata has more than {MAX_ITEMS} items"
            )));
        }
        match token {
            Token::End => break,
            Token::Close => {
                if stack.len() < 2 {
                    return Err(corrupt(offset, "'}' without an open section"));
                }
                if let Some((name, section)) = stack.pop() {
                    if let Some((_, parent)) = stack.last_mut() {
                        parent.entries.push((name, Node::Section(section)));
                    }
                }
            }
            Token::Ident(name) | Token::Str(name) => {
                let (at, next) = lexer.next()?;
                match next {
                    Token::Open => {
                        if stack.len() > MAX_DEPTH {
                            return Err(GuestError::Limit(format!(
                                "LVM metadata nests sections deeper than {MAX_DEPTH}"
                            )));
                        }
                        stack.push((name, Section::default()));
                    }
                    Token::Equals => {
                        let value = read_value(&mut lexer, &mut items)?;
                        if let Some((_, section)) = stack.last_mut() {
                            section.entries.push((name, Node::Value(value)));
                        }
                    }
                    other => {
                        return Err(corrupt(
                            at,
                            format!("expected '=' or '{{' after {name:?}, found {other:?}"),
                        ));
                    }
                }
            }
            other => return Err(corrupt(offset, format!("unexpected {other:?}"))),
        }
    }
    if stack.len() != 1 {
        return Err(corrupt(text.len(), "a section is not closed"));
    }
    Ok(stack.pop().map(|(_, s)| s).unwrap_or_default())
}

fn read_value(lexer: &mut Lexer<'_>, items: &mut usize) -> GuestResult<Value> {
    let (offset, token) = lexer.next()?;
    if token != Token::ListOpen {
        return scalar(offset, token);
    }
    let mut list = Vec::new();
    loop {
        let (at, token) = lexer.next()?;
        *items += 1;
        if *items > MAX_ITEMS {
            return Err(GuestError::Limit(format!(
                "LVM metadata has more than {MAX_ITEMS} items"
            )));
        }
        match token {
            Token::ListClose => return Ok(Value::List(list)),
            Token::Comma if !list.is_empty() => {}
            Token::End => return Err(corrupt(at, "unterminated list")),
            other => list.push(scalar(at, other)?),
        }
    }
}

/// For fuzzing: parses `bytes` as metadata text. Never panics.
pub fn fuzz_lvm_text(bytes: &[u8]) {
    if let Ok(top) = parse(bytes) {
        for (_, vg) in top.sections() {
            let _ = (vg.str("id"), vg.int("seqno"), vg.section("logical_volumes"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"vg0 {
id = "abc-def"
seqno = 7
status = ["RESIZEABLE", "READ", "WRITE"]
extent_size = 8192 # 4 Megabytes
physical_volumes {
pv0 {
id = "x\"y"
pe_start = 2048
}
}
}
# Generated by LVM2
contents = "Text Format Volume Group"
version = 1
"#;

    #[test]
    fn parses_sections_values_and_lists() {
        let top = parse(SAMPLE.as_bytes()).unwrap();
        let vg = top.section("vg0").unwrap();
        assert_eq!(vg.int("seqno"), Some(7));
        assert_eq!(vg.int("extent_size"), Some(8192));
        assert_eq!(vg.list("status").map(|l| l.len()), Some(3));
        let pv = vg
            .section("physical_volumes")
            .unwrap()
            .section("pv0")
            .unwrap();
        assert_eq!(pv.str("id"), Some("x\"y"));
        assert_eq!(top.int("version"), Some(1));
    }

    #[test]
    fn stops_at_nul() {
        let mut t = SAMPLE.as_bytes().to_vec();
        t.push(0);
        t.extend_from_slice(b"garbage {{{{");
        assert!(parse(&t).is_ok());
    }

    #[test]
    fn refuses_deep_nesting_and_damage() {
        let deep = "a {".repeat(100_000);
        assert!(matches!(parse(deep.as_bytes()), Err(GuestError::Limit(_))));
        assert!(parse(b"a { b = ").is_err());
        assert!(parse(b"}").is_err());
        assert!(parse(b"a { b = [1, 2").is_err());
        assert!(parse(b"a = \"open").is_err());
        assert!(matches!(
            parse(&vec![b' '; MAX_TEXT + 1]),
            Err(GuestError::Limit(_))
        ));
    }
}
