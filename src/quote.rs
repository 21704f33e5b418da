//! Input text in messages: quoted short, and warned about a few lines at a time. A damaged
//! or foreign file can hold megabyte-long lines and hundreds of thousands of them; a
//! message must stay one readable line and a run must not print a warning per line.

/// Characters of input text quoted in a message at most.
const EXCERPT_CHARS: usize = 64;

/// Lines that get a warning each before the rest are only counted.
const LINE_WARNINGS: usize = 8;

/// `text` quoted and escaped for a one-line message, cut to its first EXCERPT_CHARS
/// characters, with its length when cut.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
}

/// Warnings about lines of one input: the first few in full, then a count.
pub struct LineWarnings<'a> {
    warnings: &'a mut Vec<String>,
    seen: usize,
}

impl<'a> LineWarnings<'a> {
    pub fn new(warnings: &'a mut Vec<String>) -> Self {
        LineWarnings { warnings, seen: 0 }
    }

    /// Records one more line warning; `message` is made only when it is shown.
    pub fn push(&mut self, message: impl FnOnce() -> String) {
        self.seen += 1;
        if self.seen <= LINE_WARNINGS {
            self.warnings.push(message());
        }
    }

    /// Adds the count of the lines not shown, naming them as `what` (e.g. "descriptor
    /// lines not understood").
    pub fn finish(self, what: &str) {
        if self.seen > LINE_WARNINGS {
            self.warnings
                .push(format!("{} more {what}", self.seen - LINE_WARNINGS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(excerpt("a\tb"), "\"a\\tb\"");
        let long = "é".repeat(100);
        let e = excerpt(&long);
        assert!(e.starts_with(&format!("\"{}\"...", "é".repeat(64))), "{e}");
        assert!(e.ends_with("(200 bytes)"), "{e}");
    }

    #[test]
    fn a_few_lines_are_shown_and_the_rest_counted() {
        let mut w = Vec::new();
        let mut lines = LineWarnings::new(&mut w);
        for i in 0..20 {
            lines.push(|| format!("line {i}"));
        }
        lines.finish("lines skipped");
        assert_eq!(w.len(), LINE_WARNINGS + 1);
        assert_eq!(w[0], "line 0");
        assert_eq!(w[LINE_WARNINGS], "12 more lines skipped");
    }
}
