//! The VMDK text descriptor: header keys, extent lines and ddb entries.
//!
//! Real descriptors vary: LF or CRLF, spaces around `=` or not, quoted or bare values, any
//! letter case, file names with spaces, UTF-8 or windows-1252. Parsing is tolerant of all of
//! that; anything it does not understand becomes a warning, not an error, unless it would
//! change what the disk contains (a malformed extent line).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::quote::{LineWarnings, excerpt};

/// How the guest may access an extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Access {
    Rw,
    Rdonly,
    Noaccess,
}

/// The extent types of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExtentType {
    Flat,
    Sparse,
    Zero,
    Vmfs,
    Vmfssparse,
    Sesparse,
    Vmfsrdm,
    Vmfsraw,
}

impl Access {
    /// As a descriptor spells it.
    pub fn name(self) -> &'static str {
        match self {
            Access::Rw => "RW",
            Access::Rdonly => "RDONLY",
            Access::Noaccess => "NOACCESS",
        }
    }
}

impl ExtentType {
    /// As a descriptor spells it.
    pub fn name(self) -> &'static str {
        match self {
            ExtentType::Flat => "FLAT",
            ExtentType::Sparse => "SPARSE",
            ExtentType::Zero => "ZERO",
            ExtentType::Vmfs => "VMFS",
            ExtentType::Vmfssparse => "VMFSSPARSE",
            ExtentType::Sesparse => "SESPARSE",
            ExtentType::Vmfsrdm => "VMFSRDM",
            ExtentType::Vmfsraw => "VMFSRAW",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_uppercase().as_str() {
            "FLAT" => ExtentType::Flat,
            "SPARSE" => ExtentType::Sparse,
            "ZERO" => ExtentType::Zero,
            "VMFS" => ExtentType::Vmfs,
            "VMFSSPARSE" => ExtentType::Vmfssparse,
            "SESPARSE" => ExtentType::Sesparse,
            "VMFSRDM" => ExtentType::Vmfsrdm,
            "VMFSRAW" => ExtentType::Vmfsraw,
            _ => return None,
        })
    }
}

/// One extent line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtentLine {
    pub access: Access,
    pub sectors: u64,
    #[serde(rename = "type")]
    pub kind: ExtentType,
    /// The file name as written (None for ZERO).
    pub file: Option<String>,
    /// Sectors into the file where the extent starts (FLAT and VMFS only).
    pub offset: u64,
    /// 1-based line number in the descriptor, for messages.
    #[serde(skip)]
    pub line: usize,
}

/// A parsed descriptor.
#[derive(Debug, Clone, Default)]
pub struct Descriptor {
    /// Header keys, lower-cased (`version`, `cid`, `parentcid`, `createtype`, ...).
    pub header: BTreeMap<String, String>,
    pub extents: Vec<ExtentLine>,
    /// `ddb.*` keys, lower-cased, values unquoted.
    pub ddb: BTreeMap<String, String>,
    /// What was tolerated: odd lines, unusual encodings.
    pub warnings: Vec<String>,
}

/// Why a descriptor could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorError {
    pub line: usize,
    pub detail: String,
}

impl Descriptor {
    pub fn create_type(&self) -> Option<&str> {
        self.header.get("createtype").map(String::as_str)
    }

    pub fn parent_cid(&self) -> Option<&str> {
        self.header.get("parentcid").map(String::as_str)
    }

    /// True when `parentCID` names a parent (anything but ffffffff).
    pub fn has_parent(&self) -> bool {
        self.parent_cid()
            .is_some_and(|cid| !cid.eq_ignore_ascii_case("ffffffff"))
    }

    /// Sum of the extents' sectors: the disk's size in sectors.
    pub fn total_sectors(&self) -> u64 {
        self.extents
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.sectors))
    }

    /// Parses descriptor bytes: UTF-8 when valid, else windows-1252.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, DescriptorError> {
        // Embedded descriptors are NUL-padded to whole sectors.
        let bytes = match bytes.iter().position(|&b| b == 0) {
            Some(nul) => &bytes[..nul],
            None => bytes,
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::parse(text),
            Err(_) => {
                let (text, _, _) = encoding_rs::WINDOWS_1252.decode(bytes);
                let mut d = Self::parse(&text)?;
                d.warnings
                    .push("descriptor is not UTF-8; read as windows-1252".to_string());
                Ok(d)
            }
        }
    }

    pub fn parse(text: &str) -> Result<Self, DescriptorError> {
        let mut d = Descriptor::default();
        let mut warnings = Vec::new();
        let mut not_understood = LineWarnings::new(&mut warnings);
        for (index, raw) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let line = raw.trim_end_matches('\r').trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(extent) = parse_extent_line(line, line_no)? {
                d.extents.push(extent);
                continue;
            }
            match line.split_once('=') {
                Some((key, value)) => {
                    let key = key.trim().to_ascii_lowercase();
                    let value = unquote(value.trim()).to_string();
                    if key.starts_with("ddb.") {
                        d.ddb.insert(key, value);
                    } else {
                        d.header.insert(key, value);
                    }
                }
                None => not_understood.push(|| {
                    format!(
                        "descriptor line {line_no} not understood: {}",
                        excerpt(line)
                    )
                }),
            }
        }
        not_understood.finish("descriptor lines not understood");
        d.warnings = warnings;
        if d.extents.is_empty() {
            return Err(DescriptorError {
                line: 0,
                detail: "no extent lines".to_string(),
            });
        }
        Ok(d)
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Parses `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`. Returns Ok(None) when the line does not
/// start with an access keyword (it is then a key=value line).
fn parse_extent_line(line: &str, line_no: usize) -> Result<Option<ExtentLine>, DescriptorError> {
    let (first, rest) = split_word(line);
    let access = match first.to_ascii_uppercase().as_str() {
        "RW" => Access::Rw,
        "RDONLY" => Access::Rdonly,
        "NOACCESS" => Access::Noaccess,
        _ => return Ok(None),
    };
    // "RW = x" would be a key named RW; extent lines never hold '=' before the file name.
    if rest.trim_start().starts_with('=') {
        return Ok(None);
    }
    let err = |detail: String| DescriptorError {
        line: line_no,
        detail,
    };
    let (sectors_word, rest) = split_word(rest);
    let sectors: u64 = sectors_word.parse().map_err(|_| {
        err(format!(
            "extent sector count {} is not a number",
            excerpt(sectors_word)
        ))
    })?;
    let (type_word, rest) = split_word(rest);
    let kind = ExtentType::parse(type_word)
        .ok_or_else(|| err(format!("unknown extent type {}", excerpt(type_word))))?;
    let rest = rest.trim_start();
    let (file, rest) = if rest.is_empty() {
        (None, rest)
    } else if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or_else(|| err("extent file name has no closing quote".to_string()))?;
        (Some(quoted[..end].to_string()), &quoted[end + 1..])
    } else {
        let (word, rest) = split_word(rest);
        (Some(word.to_string()), rest)
    };
    let (offset_word, rest) = split_word(rest);
    let offset = if offset_word.is_empty() {
        0
    } else {
        offset_word.parse().map_err(|_| {
            err(format!(
                "extent offset {} is not a number",
                excerpt(offset_word)
            ))
        })?
    };
    if !rest.trim().is_empty() {
        return Err(err(format!(
            "unexpected text after the extent: {}",
            excerpt(rest.trim())
        )));
    }
    if kind != ExtentType::Zero && file.as_deref().is_none_or(str::is_empty) {
        return Err(err("extent has no file name".to_string()));
    }
    Ok(Some(ExtentLine {
        access,
        sectors,
        kind,
        file: if kind == ExtentType::Zero { None } else { file },
        offset,
        line: line_no,
    }))
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_lines_give_few_short_warnings() {
        let junk = "z".repeat(300_000);
        let mut text = String::from("RW 8 ZERO\n");
        for _ in 0..20 {
            text.push_str(&junk);
            text.push('\n');
        }
        let d = Descriptor::parse(&text).unwrap();
        assert_eq!(d.warnings.len(), 9, "{:?}", d.warnings);
        assert!(d.warnings.iter().all(|w| w.len() < 200), "{:?}", d.warnings);
        assert_eq!(d.warnings[8], "12 more descriptor lines not understood");
        let err = Descriptor::parse(&format!("RW 8 FLAT \"f\" 0 {junk}\n")).unwrap_err();
        assert!(err.detail.len() < 200, "{}", err.detail);
        assert!(err.detail.ends_with("... (300000 bytes)"), "{}", err.detail);
    }

    #[test]
    fn parses_crlf_spaces_quotes_and_case() {
        let text = "# Disk DescriptorFile\r\nversion=1\r\nCID = fffffffe\r\nparentCID=ffffffff\r\n\
                    createType = \"monolithicFlat\"\r\n\r\n# Extent description\r\n\
                    rw 2048 flat \"my disk-flat.vmdk\" 0\r\nRDONLY 100 ZERO\r\n\
                    ddb.adapterType = \"lsilogic\"\r\nddb.virtualHWVersion=\"19\"\r\n";
        let d = Descriptor::parse(text).unwrap();
        assert_eq!(d.create_type(), Some("monolithicFlat"));
        assert!(!d.has_parent());
        assert_eq!(d.extents.len(), 2);
        assert_eq!(d.extents[0].file.as_deref(), Some("my disk-flat.vmdk"));
        assert_eq!(d.extents[0].access, Access::Rw);
        assert_eq!(d.extents[1].kind, ExtentType::Zero);
        assert_eq!(d.extents[1].access, Access::Rdonly);
        assert_eq!(d.total_sectors(), 2148);
        assert_eq!(d.ddb["ddb.adaptertype"], "lsilogic");
        assert_eq!(d.ddb["ddb.virtualhwversion"], "19");
    }

    #[test]
    fn reads_windows_1252_names() {
        let mut bytes = b"createType=\"monolithicFlat\"\nRW 8 FLAT \"caf".to_vec();
        bytes.push(0xE9); // é in windows-1252, invalid alone in UTF-8
        bytes.extend_from_slice(b"-flat.vmdk\" 0\n");
        let d = Descriptor::parse_bytes(&bytes).unwrap();
        assert_eq!(d.extents[0].file.as_deref(), Some("caf\u{e9}-flat.vmdk"));
        assert_eq!(d.warnings.len(), 1);
    }

    #[test]
    fn rejects_bad_extent_lines() {
        assert_eq!(
            Descriptor::parse("RW abc FLAT \"x\" 0").unwrap_err().line,
            1
        );
        assert!(Descriptor::parse("RW 10 WEIRD \"x\"").is_err());
        assert!(Descriptor::parse("RW 10 FLAT \"x").is_err());
        assert!(Descriptor::parse("RW 10 FLAT").is_err());
        assert!(Descriptor::parse("version=1\n").is_err());
    }

    #[test]
    fn parent_cid_marks_a_delta() {
        let d = Descriptor::parse("parentCID=1234abcd\nRW 8 SPARSE \"a.vmdk\"").unwrap();
        assert!(d.has_parent());
    }
}
