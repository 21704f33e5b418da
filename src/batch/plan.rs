//! Reading a batch plan: JSON lines, one conversion per line, with the keys of `convert`'s
//! options (docs/bulk.md has the table). A line that cannot be used is that item's
//! failure (kind `usage`), never the batch's: the rest still run. Only a plan that cannot
//! be read at all stops the batch.
//!
//! Every line is parsed, whichever shard runs, so that every shard sees the same items
//! and the same duplicate destinations, and refuses them the same way.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::batch::shard::Shard;
use crate::error::{Error, Result};
use crate::plan::{ConvertRequest, DiskType, OutputFormat, SparseMode};
use crate::reflink::ReflinkMode;
use crate::target::Target;

/// Longest line read; a longer one is that item's failure (a plan line is a few hundred
/// bytes; this bounds what a damaged plan can make the batch hold).
const MAX_LINE: usize = 64 << 10;

/// One line of a plan as written. Unknown keys are refused: a misspelt option must not
/// be silently ignored on a thousand disks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    source: String,
    destination: String,
    /// A label of the caller's, echoed in the report (an inventory key, a VM name).
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default, rename = "type")]
    disk_type: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    block_size: Option<SizeValue>,
    #[serde(default)]
    logical_sector: Option<u32>,
    #[serde(default)]
    physical_sector: Option<u32>,
    #[serde(default)]
    sparse: Option<String>,
    #[serde(default)]
    reflink: Option<String>,
    #[serde(default)]
    verify: Option<bool>,
    #[serde(default)]
    force: Option<bool>,
    #[serde(default)]
    allow_outside_paths: Option<bool>,
    #[serde(default)]
    input_format: Option<String>,
    /// Named so it can be refused with a reason rather than as an unknown key.
    #[serde(default)]
    in_place: Option<bool>,
}

/// `block_size` as bytes (2097152) or as text ("2M").
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// A usable line: what to read, what to write, and the request `convert` would build.
#[derive(Debug, Clone)]
pub struct ItemSpec {
    pub id: Option<String>,
    /// As written in the plan (for reports and records).
    pub source_text: String,
    pub destination_text: String,
    /// Resolved against the plan's folder when relative.
    pub source: PathBuf,
    pub destination: PathBuf,
    /// Everything but the reproducible time, which is the batch's.
    pub request: ConvertRequest,
    pub allow_outside_paths: bool,
    pub raw_fallback: bool,
}

/// One line of the plan that holds something.
#[derive(Debug)]
pub struct Item {
    /// 1-based, as editors number lines; `--shard I/N` takes lines with (line - 1) mod N = I.
    pub line: u64,
    pub spec: std::result::Result<ItemSpec, Box<PlanLineError>>,
}

/// Why a line cannot be run: a usage error, with the line's text where it parsed at all
/// (so a report can still name the source and destination).
#[derive(Debug)]
pub struct PlanLineError {
    pub error: Error,
    pub id: Option<String>,
    pub source: Option<String>,
    pub destination: Option<String>,
}

/// The items of one shard of a plan.
#[derive(Debug)]
pub struct Plan {
    /// The plan as named (`-` for stdin).
    pub path: PathBuf,
    /// Lines holding items, in the whole plan.
    pub total_items: u64,
    /// This shard's items, in line order.
    pub items: Vec<Item>,
}

/// Defaults the command line gives every line (a line's own key wins).
#[derive(Debug, Clone, Copy, Default)]
pub struct LineDefaults {
    pub allow_outside_paths: bool,
    pub raw_fallback: bool,
}

impl Plan {
    /// Reads the plan at `path` (`-`: stdin), keeping `shard`'s items. Relative paths in
    /// it are taken from the plan's folder (the current one for stdin), so a plan moves
    /// with its disks and reads the same from any working folder. Fails only when the
    /// plan cannot be read.
    pub fn read(path: &Path, shard: Shard, defaults: LineDefaults) -> Result<Plan> {
        if path.as_os_str() == "-" {
            let base = PathBuf::new();
            return Self::parse(path, &base, std::io::stdin().lock(), shard, defaults);
        }
        let file = std::fs::File::open(path).map_err(|e| Error::input_io(path, "the plan", e))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::not_a_file(
                path,
                "is a folder; name the plan file (JSON lines)",
            ));
        }
        // A plan named without a folder: paths stay as written (the current folder).
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(path, &base, file, shard, defaults)
    }

    /// Parses plan text from `input`.
    pub fn parse(
        path: &Path,
        base: &Path,
        input: impl Read,
        shard: Shard,
        defaults: LineDefaults,
    ) -> Result<Plan> {
        let mut reader = BufReader::new(input);
        let mut items = Vec::new();
        // Every destination in the plan, normalised, with its first line: a second line
        // writing the same file is refused in every shard alike.
        let mut destinations: HashMap<PathBuf, u64> = HashMap::new();
        let mut total_items = 0;
        let mut raw = Vec::new();
        let mut line = 0u64;
        loop {
            raw.clear();
            let n = read_line(&mut reader, &mut raw)
                .map_err(|e| Error::input_io(path, "the plan", e))?;
            if n == 0 {
                break;
            }
            line += 1;
            let text = trim(&raw);
            if text.is_empty() {
                continue;
            }
            total_items += 1;
            let mut spec = if n > MAX_LINE {
                Err(line_error(
                    None,
                    format!(
                        "the line is longer than {} KiB; a plan line describes one disk",
                        MAX_LINE >> 10
                    ),
                ))
            } else {
                parse_line(text, base, defaults)
            };
            if let Ok(s) = &spec {
                let key = normalise(&s.destination);
                match destinations.get(&key) {
                    Some(&first) => {
                        spec = Err(Box::new(PlanLineError {
                            error: Error::usage(
                                Some("destination"),
                                format!(
                                    "{} is also the destination on line {first}; each output must be written once",
                                    s.destination_text
                                ),
                            ),
                            id: s.id.clone(),
                            source: Some(s.source_text.clone()),
                            destination: Some(s.destination_text.clone()),
                        }));
                    }
                    None => {
                        destinations.insert(key, line);
                    }
                }
            }
            if shard.takes(line) {
                items.push(Item { line, spec });
            }
        }
        Ok(Plan {
            path: path.to_path_buf(),
            total_items,
            items,
        })
    }
}

/// Reads up to and including the next newline, keeping at most MAX_LINE + 1 bytes of it;
/// returns the line's full length (0 at the end).
fn read_line(reader: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = (MAX_LINE + 1).saturating_sub(out.len()).min(take);
        out.extend_from_slice(&buf[..room]);
        reader.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

fn trim(raw: &[u8]) -> &[u8] {
    raw.trim_ascii()
}

fn line_error(option: Option<&str>, detail: impl Into<String>) -> Box<PlanLineError> {
    Box::new(PlanLineError {
        error: Error::usage(option, detail),
        id: None,
        source: None,
        destination: None,
    })
}

/// One line's text as an item, or why not.
fn parse_line(
    text: &[u8],
    base: &Path,
    defaults: LineDefaults,
) -> std::result::Result<ItemSpec, Box<PlanLineError>> {
    let text =
        std::str::from_utf8(text).map_err(|_| line_error(None, "the line is not UTF-8 text"))?;
    let line: Line = serde_json::from_str(text).map_err(|e| {
        // Keep what can be read, so the report still names the disk.
        let loose: Option<serde_json::Value> = serde_json::from_str(text).ok();
        let field = |k: &str| {
            loose
                .as_ref()
                .and_then(|v| v.get(k)?.as_str().map(str::to_string))
        };
        // serde's "at line 1 column N" would read as a plan line number.
        let detail = e.to_string();
        let detail = detail
            .rsplit_once(" at line ")
            .map_or(detail.as_str(), |(d, _)| d);
        Box::new(PlanLineError {
            error: Error::usage(
                None,
                format!("not a plan line (column {}): {detail}", e.column()),
            ),
            id: field("id"),
            source: field("source"),
            destination: field("destination"),
        })
    })?;
    let named = |e: Error| {
        Box::new(PlanLineError {
            error: e,
            id: line.id.clone(),
            source: Some(line.source.clone()),
            destination: Some(line.destination.clone()),
        })
    };
    request(&line, base, defaults).map_err(named)
}

fn request(line: &Line, base: &Path, defaults: LineDefaults) -> Result<ItemSpec> {
    fn choice<T: Copy>(
        key: &str,
        value: &Option<String>,
        options: &[(&str, T)],
    ) -> Result<Option<T>> {
        let Some(v) = value else { return Ok(None) };
        options
            .iter()
            .find(|(name, _)| name == v)
            .map(|&(_, t)| Some(t))
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                Error::usage(
                    Some(key),
                    format!("{v:?} is not one of {}", names.join(", ")),
                )
            })
    }
    if line.source.is_empty() || line.destination.is_empty() {
        return Err(Error::usage(None, "source and destination must name files"));
    }
    if line.in_place == Some(true) {
        return Err(Error::usage(
            Some("in_place"),
            "is not offered in plans: it consumes the source, so the plan could not be run again",
        ));
    }
    if line.destination == "-" {
        return Err(Error::usage(
            Some("destination"),
            "- (stdout) is for `vdconv convert`; a batch writes files",
        ));
    }
    let block_size = match &line.block_size {
        None => None,
        Some(SizeValue::Bytes(b)) => Some(*b),
        Some(SizeValue::Text(t)) => Some(crate::size::parse_size(t).ok_or_else(|| {
            Error::usage(
                Some("block_size"),
                format!("{t:?} is not bytes or a size like 2M"),
            )
        })?),
    };
    let request = ConvertRequest {
        format: choice(
            "format",
            &line.format,
            &[("vhd", OutputFormat::Vhd), ("vhdx", OutputFormat::Vhdx)],
        )?,
        disk_type: choice(
            "type",
            &line.disk_type,
            &[("fixed", DiskType::Fixed), ("dynamic", DiskType::Dynamic)],
        )?,
        target: choice(
            "target",
            &line.target,
            &[
                ("azure", Target::Azure),
                ("hyperv-gen1", Target::HypervGen1),
                ("hyperv-gen2", Target::HypervGen2),
            ],
        )?,
        block_size,
        logical_sector: line.logical_sector,
        physical_sector: line.physical_sector,
        sparse: choice(
            "sparse",
            &line.sparse,
            &[
                ("auto", SparseMode::Auto),
                ("always", SparseMode::Always),
                ("never", SparseMode::Never),
            ],
        )?,
        reflink: choice(
            "reflink",
            &line.reflink,
            &[
                ("auto", ReflinkMode::Auto),
                ("always", ReflinkMode::Always),
                ("never", ReflinkMode::Never),
            ],
        )?,
        verify: line.verify.unwrap_or(false),
        force: line.force.unwrap_or(false),
        ..Default::default()
    };
    let raw_fallback = match choice("input_format", &line.input_format, &[("raw", true)])? {
        Some(raw) => raw,
        None => defaults.raw_fallback,
    };
    Ok(ItemSpec {
        id: line.id.clone(),
        source_text: line.source.clone(),
        destination_text: line.destination.clone(),
        source: base.join(&line.source),
        destination: base.join(&line.destination),
        request,
        allow_outside_paths: line
            .allow_outside_paths
            .unwrap_or(defaults.allow_outside_paths),
        raw_fallback,
    })
}

/// `path` with `.` dropped and `..` applied to the names before it, without asking the
/// file system (the file need not exist yet): two spellings of one destination compare
/// equal.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, shard: Shard) -> Plan {
        Plan::parse(
            Path::new("plan.jsonl"),
            Path::new("/data"),
            text.as_bytes(),
            shard,
            LineDefaults::default(),
        )
        .unwrap()
    }

    #[test]
    fn lines_become_requests_and_bad_lines_failures() {
        let plan = parse(
            concat!(
                r#"{"source":"a.vmdk","destination":"out/a.vhd","type":"fixed","id":"vm-1"}"#,
                "\n\n",
                r#"{"source":"b.vmdk","destination":"/abs/b.vhdx","block_size":"2M","verify":true}"#,
                "\n",
                r#"{"source":"c.vmdk","destination":"c.vhd","blocksize":"2M"}"#,
                "\n",
                "not json\n",
                r#"{"source":"d.vmdk","destination":"d.vhd","type":"thin"}"#,
                "\r\n",
                r#"{"source":"e.vmdk","destination":"./out/../out/a.vhd"}"#,
            ),
            Shard::WHOLE,
        );
        assert_eq!(plan.total_items, 6);
        let lines: Vec<u64> = plan.items.iter().map(|i| i.line).collect();
        assert_eq!(
            lines,
            [1, 3, 4, 5, 6, 7],
            "blank lines are counted, not items"
        );
        let a = plan.items[0].spec.as_ref().unwrap();
        assert_eq!(a.source, Path::new("/data/a.vmdk"));
        assert_eq!(a.destination, Path::new("/data/out/a.vhd"));
        assert_eq!(a.request.disk_type, Some(DiskType::Fixed));
        assert_eq!(a.id.as_deref(), Some("vm-1"));
        let b = plan.items[1].spec.as_ref().unwrap();
        assert_eq!(b.destination, Path::new("/abs/b.vhdx"));
        assert_eq!(b.request.block_size, Some(2 << 20));
        assert!(b.request.verify);
        let c = plan.items[2].spec.as_ref().unwrap_err();
        assert!(
            c.error.to_string().contains("unknown field `blocksize`"),
            "{}",
            c.error
        );
        assert_eq!(
            c.source.as_deref(),
            Some("c.vmdk"),
            "the report still names the disk"
        );
        assert!(plan.items[3].spec.is_err());
        let d = plan.items[4].spec.as_ref().unwrap_err();
        assert_eq!(
            d.error.to_string(),
            r#"type: "thin" is not one of fixed, dynamic"#
        );
        let e = plan.items[5].spec.as_ref().unwrap_err();
        assert!(
            e.error
                .to_string()
                .contains("also the destination on line 1"),
            "{}",
            e.error
        );
        for item in &plan.items {
            if let Err(e) = &item.spec {
                assert_eq!(e.error.kind(), crate::ErrorKind::Usage);
            }
        }
    }

    #[test]
    fn every_shard_sees_the_same_duplicates() {
        let text = concat!(
            r#"{"source":"a","destination":"x.vhd"}"#,
            "\n",
            r#"{"source":"b","destination":"x.vhd"}"#,
            "\n"
        );
        let second = parse(text, Shard::new(1, 2).unwrap());
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.items[0].line, 2);
        assert!(
            second.items[0].spec.is_err(),
            "line 2 repeats line 1 of another shard"
        );
    }

    #[test]
    fn refusals_say_why() {
        for (line, needle) in [
            (
                r#"{"source":"a","destination":"-"}"#,
                "a batch writes files",
            ),
            (
                r#"{"source":"a","destination":"b.vhd","in_place":true}"#,
                "consumes the source",
            ),
            (r#"{"source":"","destination":"b.vhd"}"#, "must name files"),
            (
                r#"{"source":"a","destination":"b.vhd","block_size":"2X"}"#,
                "not bytes or a size",
            ),
        ] {
            let plan = parse(line, Shard::WHOLE);
            let e = plan.items[0].spec.as_ref().unwrap_err();
            assert!(e.error.to_string().contains(needle), "{line}: {}", e.error);
        }
        let long = format!(
            r#"{{"source":"{}","destination":"b.vhd"}}"#,
            "a".repeat(MAX_LINE)
        );
        let plan = parse(
            &format!("{long}\n{}", r#"{"source":"a","destination":"c.vhd"}"#),
            Shard::WHOLE,
        );
        assert!(plan.items[0].spec.is_err());
        assert!(
            plan.items[1].spec.is_ok(),
            "the line after a long one is read whole"
        );
    }
}
