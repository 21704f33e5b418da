//! LVM2: volume groups assembled from the PVs found on the disk, and each visible logical
//! volume made of linear segments exposed as a [`ByteSource`] over its PVs' extents.
//! Anything else (RAID, mirror, thin, cache, striping over several PVs, a missing PV) is
//! reported, never guessed at.

pub mod label;
pub mod map;
pub mod text;

use std::collections::HashMap;
use std::sync::Arc;

use crate::guest::source::ByteSource;
use map::{LvSource, Segment};
use text::Section;

/// Logical volumes listed at most, all VGs together (each may open a file system).
const MAX_LVS: usize = 1024;
/// Metadata text read at most, all PVs together (each text may be 1 MiB).
pub const MAX_TOTAL_TEXT: usize = 16 << 20;
/// Segments per logical volume at most.
const MAX_SEGMENTS: usize = 65_536;

/// A PV found on the disk (a partition, or the whole disk).
#[derive(Clone)]
pub struct FoundPv {
    pub uuid: String,
    pub source: Arc<dyn ByteSource>,
    /// Where the PV starts on the disk.
    pub disk_offset: u64,
}

/// A logical volume of a volume group: its bytes, or why they cannot be read.
pub struct LogicalVolume {
    pub vg: String,
    pub name: String,
    /// Disk offset of the first segment's first byte, when known.
    pub disk_offset: u64,
    pub source: Result<Arc<dyn ByteSource>, String>,
}

/// The metadata of one VG as the newest copy on the disk has it.
struct VgMetadata {
    name: String,
    seqno: i64,
    section: Section,
}

/// Picks, per VG id, the copy with the highest `seqno` among every PV's metadata texts
/// (each tagged with who holds it). Returns the VGs and, per holder, the problems seen on
/// the way (texts that do not parse).
fn newest_metadata<T: Copy>(texts: &[(T, Vec<u8>)]) -> (Vec<VgMetadata>, Vec<(T, String)>) {
    let mut by_id: HashMap<String, VgMetadata> = HashMap::new();
    let mut problems = Vec::new();
    for (holder, raw) in texts {
        let top = match text::parse(raw) {
            Ok(top) => top,
            Err(e) => {
                problems.push((*holder, format!("LVM metadata does not parse: {e}")));
                continue;
            }
        };
        // The VG is the one top-level section; the rest are comments and descriptions.
        let Some((name, vg)) = top.sections().next() else {
            problems.push((*holder, "LVM metadata holds no volume group".into()));
            continue;
        };
        let (Some(id), Some(seqno)) = (vg.str("id"), vg.int("seqno")) else {
            problems.push((
                *holder,
                format!("LVM metadata of VG {name} has no id or seqno"),
            ));
            continue;
        };
        let newer = by_id.get(id).is_none_or(|old| seqno > old.seqno);
        if newer {
            by_id.insert(
                id.to_string(),
                VgMetadata {
                    name: name.to_string(),
                    seqno,
                    section: vg.clone(),
                },
            );
        }
    }
    let mut vgs: Vec<VgMetadata> = by_id.into_values().collect();
    vgs.sort_by(|a, b| a.name.cmp(&b.name));
    (vgs, problems)
}

/// Assembles every VG whose metadata is among `texts` (each tagged with the PV that holds
/// it) and lists its visible LVs. `problems` collects what prevented a whole VG from being
/// read; `holder_problems`, the texts that could not be used, by holder.
pub fn logical_volumes<T: Copy>(
    pvs: &[FoundPv],
    texts: &[(T, Vec<u8>)],
    problems: &mut Vec<String>,
    holder_problems: &mut Vec<(T, String)>,
) -> Vec<LogicalVolume> {
    let (vgs, mut seen) = newest_metadata(texts);
    holder_problems.append(&mut seen);
    let mut out = Vec::new();
    for vg in vgs {
        out.extend(vg_volumes(&vg, pvs, problems));
    }
    if out.len() > MAX_LVS {
        problems.push(format!(
            "more than {MAX_LVS} logical volumes; the rest are not listed"
        ));
        out.truncate(MAX_LVS);
    }
    out
}

/// The PVs of a VG by their metadata name (`pv0`): the PV found on the disk with that
/// UUID and the byte offset of its first extent, or `None` when the PV is missing.
fn vg_pvs(vg: &Section, pvs: &[FoundPv]) -> HashMap<String, Option<(FoundPv, u64)>> {
    let mut out = HashMap::new();
    let Some(section) = vg.section("physical_volumes") else {
        return out;
    };
    for (name, pv) in section.sections() {
        let uuid: String = pv.str("id").unwrap_or("").replace('-', "");
        let found = pvs.iter().find(|p| p.uuid == uuid);
        let pe_start = pv.int("pe_start").and_then(|s| u64::try_from(s).ok());
        let entry = match (found, pe_start) {
            (Some(p), Some(start)) => start.checked_mul(512).map(|b| (p.clone(), b)),
            _ => None,
        };
        out.insert(name.to_string(), entry);
    }
    out
}

fn vg_volumes(vg: &VgMetadata, pvs: &[FoundPv], problems: &mut Vec<String>) -> Vec<LogicalVolume> {
    let extent_sectors = vg.section.int("extent_size").unwrap_or(0);
    let extent_bytes = u64::try_from(extent_sectors)
        .ok()
        .filter(|&s| s > 0)
        .and_then(|s| s.checked_mul(512));
    let Some(extent_bytes) = extent_bytes else {
        problems.push(format!(
            "VG {}: extent_size {extent_sectors} is not valid",
            vg.name
        ));
        return Vec::new();
    };
    let pv_map = vg_pvs(&vg.section, pvs);
    let Some(lvs) = vg.section.section("logical_volumes") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, lv) in lvs.sections().take(MAX_LVS + 1) {
        let visible = lv
            .list("status")
            .is_some_and(|l| l.contains(&text::Value::Str("VISIBLE".into())));
        if !visible {
            continue;
        }
        let mapped = lv_source(lv, extent_bytes, &pv_map);
        let disk_offset = mapped.as_ref().map(|(_, off)| *off).unwrap_or(0);
        out.push(LogicalVolume {
            vg: vg.name.clone(),
            name: name.to_string(),
            disk_offset,
            source: mapped.map(|(src, _)| src),
        });
    }
    out
}

fn seg_int(seg: &Section, key: &str, seg_name: &str) -> Result<u64, String> {
    seg.int(key)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("{seg_name}: {key} is missing or negative"))
}

/// Builds the byte source of one LV from its segments, or says why it cannot be read.
/// Also returns the disk offset of the LV's first byte.
fn lv_source(
    lv: &Section,
    extent_bytes: u64,
    pv_map: &HashMap<String, Option<(FoundPv, u64)>>,
) -> Result<(Arc<dyn ByteSource>, u64), String> {
    let mut segments = Vec::new();
    let mut first_disk_offset = None;
    let named_segments = lv.sections().filter(|(n, _)| n.starts_with("segment"));
    for (seg_name, seg) in named_segments.take(MAX_SEGMENTS + 1) {
        if segments.len() == MAX_SEGMENTS {
            return Err(format!("more than {MAX_SEGMENTS} segments"));
        }
        let kind = seg.str("type").unwrap_or("(none)");
        let stripe_count = seg.int("stripe_count").unwrap_or(1);
        if kind != "striped" {
            return Err(format!("{seg_name} is of type {kind}, which is not read"));
        }
        if stripe_count != 1 {
            return Err(format!(
                "{seg_name} is striped over {stripe_count} PVs, which is not read"
            ));
        }
        let start = seg_int(seg, "start_extent", seg_name)?;
        let count = seg_int(seg, "extent_count", seg_name)?;
        let stripes = seg.list("stripes").unwrap_or_default();
        let (Some(text::Value::Str(pv_name)), Some(text::Value::Int(pe))) =
            (stripes.first(), stripes.get(1))
        else {
            return Err(format!("{seg_name}: stripes is not [\"pvN\", extent]"));
        };
        let pe = u64::try_from(*pe).map_err(|_| format!("{seg_name}: negative extent"))?;
        let Some(Some((pv, pe_start))) = pv_map.get(pv_name) else {
            return Err(format!("{pv_name} of {seg_name} is missing from the disk"));
        };
        let bytes = |n: u64| n.checked_mul(extent_bytes);
        let pv_byte = bytes(pe).and_then(|b| b.checked_add(*pe_start));
        let end = pv_byte
            .zip(bytes(count))
            .and_then(|(a, b)| a.checked_add(b));
        let Some((pv_byte, _)) = pv_byte.zip(end.filter(|&e| e <= pv.source.len())) else {
            return Err(format!("{seg_name} lies past the end of {pv_name}"));
        };
        if start == 0 {
            first_disk_offset = pv.disk_offset.checked_add(pv_byte);
        }
        segments.push(Segment {
            start_extent: start,
            extents: count,
            pv: pv.source.clone(),
            pv_byte,
        });
    }
    let source = LvSource::new(segments, extent_bytes)?;
    Ok((Arc::new(source), first_disk_offset.unwrap_or(0)))
}
