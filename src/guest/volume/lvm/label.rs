//! An LVM2 physical volume's on-disk records: the label (`LABELONE`), the pv_header with
//! its data and metadata area lists, the metadata area header, and the metadata text the
//! header points at (a circular buffer). GUEST.md 5.2; LVM's `format-text/layout.h`.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::text::MAX_TEXT;
use crate::guest::error::{GuestError, GuestResult};
use crate::guest::source::ByteSource;

const SECTOR: u64 = 512;
const LABEL_ID: &[u8; 8] = b"LABELONE";
const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// The seed of LVM's CRC (`INITIAL_CRC` in lib/misc/crc.h).
const INITIAL_CRC: u32 = 0xf597_a6cf;
/// Metadata areas read per PV at most (LVM makes 0, 1 or 2).
const MAX_MDAS: usize = 4;
/// `raw_locn.flags` bit: this copy is to be ignored.
const RAW_LOCN_IGNORED: u32 = 1;

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct LabelHeader {
    id: [u8; 8],
    sector_xl: U64,
    crc_xl: U32,
    offset_xl: U32,
    kind: [u8; 8],
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct DiskLocn {
    offset: U64,
    size: U64,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct MdaHeader {
    checksum: U32,
    magic: [u8; 16],
    version: U32,
    start: U64,
    size: U64,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawLocn {
    offset: U64,
    size: U64,
    checksum: U32,
    flags: U32,
}

/// What a PV's label says, and the metadata texts its areas hold.
#[derive(Debug, Clone)]
pub struct PvLabel {
    /// The 32 characters of the PV UUID, without dashes (as the metadata's `id` is after
    /// removing its dashes).
    pub uuid: String,
    /// The committed text of each readable metadata area.
    pub texts: Vec<Vec<u8>>,
    /// Why a metadata area could not be read, when one could not.
    pub problems: Vec<String>,
}

fn corrupt(structure: &'static str, offset: u64, detail: impl Into<String>) -> GuestError {
    GuestError::Corrupt {
        structure,
        offset,
        detail: detail.into(),
    }
}

/// LVM's `calc_crc`: the reflected IEEE CRC-32 without the usual inversions, seeded with
/// `INITIAL_CRC`. crc32fast inverts on the way in and out, so invert around it.
pub fn lvm_crc(data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(!INITIAL_CRC);
    hasher.update(data);
    !hasher.finalize()
}

/// Reads the label in sectors 0-3, the pv_header and every metadata area's text.
pub fn read_pv_label(src: &dyn ByteSource) -> GuestResult<PvLabel> {
    for sector in 0..4u64 {
        let offset = sector * SECTOR;
        if offset + SECTOR > src.len() {
            break;
        }
        let mut buf = [0u8; SECTOR as usize];
        src.read_exact_at(offset, &mut buf)?;
        let Ok((label, _)) = LabelHeader::ref_from_prefix(&buf[..]) else {
            continue;
        };
        if &label.id != LABEL_ID || &label.kind != LABEL_TYPE {
            continue;
        }
        if label.sector_xl.get() != sector {
            return Err(corrupt(
                "LVM label",
                offset,
                format!("says it is in sector {}", label.sector_xl.get()),
            ));
        }
        if label.crc_xl.get() != lvm_crc(&buf[20..]) {
            return Err(corrupt("LVM label", offset, "CRC does not match"));
        }
        return read_pv_header(src, &buf, offset, label.offset_xl.get() as usize);
    }
    Err(corrupt(
        "LVM label",
        0,
        "no LABELONE label in the first four sectors",
    ))
}

fn read_pv_header(
    src: &dyn ByteSource,
    sector: &[u8],
    label_offset: u64,
    header_at: usize,
) -> GuestResult<PvLabel> {
    let at = label_offset + header_at as u64;
    let bad = |detail: &str| corrupt("LVM pv_header", at, detail);
    let rest = sector
        .get(header_at..)
        .filter(|r| r.len() >= 40)
        .ok_or_else(|| bad("lies outside the label sector"))?;
    let uuid_bytes = rest.get(..32).ok_or_else(|| bad("truncated"))?;
    if !uuid_bytes.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad("PV UUID is not alphanumeric"));
    }
    let uuid = String::from_utf8_lossy(uuid_bytes).into_owned();
    // After the UUID and device size: two lists of disk_locn, each ended by a zero entry.
    let locns = <[DiskLocn]>::ref_from_prefix_with_elems(
        rest.get(40..).unwrap_or_default(),
        rest.len().saturating_sub(40) / 16,
    )
    .map(|(l, _)| l)
    .unwrap_or_default();
    let mut lists = locns.split(|l| l.offset.get() == 0 && l.size.get() == 0);
    let _data_areas = lists.next();
    let metadata_areas = lists.next().unwrap_or_default();

    let mut label = PvLabel {
        uuid,
        texts: Vec::new(),
        problems: Vec::new(),
    };
    for mda in metadata_areas.iter().take(MAX_MDAS) {
        match read_mda_text(src, mda.offset.get(), mda.size.get()) {
            Ok(Some(text)) => label.texts.push(text),
            Ok(None) => {}
            Err(e) => label.problems.push(e.to_string()),
        }
    }
    Ok(label)
}

/// Reads the committed text of the metadata area at `offset` (`None` when the area holds
/// no metadata, as a freshly made PV's second area).
fn read_mda_text(src: &dyn ByteSource, offset: u64, size: u64) -> GuestResult<Option<Vec<u8>>> {
    let bad = |detail: String| corrupt("LVM metadata area header", offset, detail);
    if offset.checked_add(size).is_none_or(|end| end > src.len()) || size < SECTOR {
        return Err(bad(format!("area of {size} bytes lies outside the volume")));
    }
    let mut buf = [0u8; SECTOR as usize];
    src.read_exact_at(offset, &mut buf)?;
    let (header, rest) = MdaHeader::ref_from_prefix(&buf[..]).map_err(|_| bad("short".into()))?;
    if &header.magic != MDA_MAGIC || header.version.get() != 1 {
        return Err(bad("bad magic or version".into()));
    }
    if header.checksum.get() != lvm_crc(&buf[4..]) {
        return Err(bad("checksum does not match".into()));
    }
    if header.start.get() != offset || header.size.get() != size {
        return Err(bad("start or size disagrees with the pv_header".into()));
    }
    let locns = <[RawLocn]>::ref_from_prefix_with_elems(rest, rest.len() / 24)
        .map(|(l, _)| l)
        .unwrap_or_default();
    let Some(locn) = locns
        .iter()
        .take_while(|l| l.offset.get() != 0)
        .find(|l| l.flags.get() & RAW_LOCN_IGNORED == 0)
    else {
        return Ok(None);
    };
    let (text_offset, text_size) = (locn.offset.get(), locn.size.get());
    let text_at = offset.saturating_add(text_offset);
    let bad_text = |detail: String| corrupt("LVM metadata text location", text_at, detail);
    if text_size > MAX_TEXT as u64 {
        return Err(GuestError::Limit(format!(
            "LVM metadata text of {text_size} bytes exceeds the {MAX_TEXT}-byte limit"
        )));
    }
    if text_offset < SECTOR || text_offset >= size {
        return Err(bad_text(format!(
            "offset {text_offset} lies outside the {size}-byte area"
        )));
    }
    // A circular buffer after the header sector: what passes the end continues at 512.
    let first = text_size.min(size - text_offset);
    let wrap = text_size - first;
    if wrap > text_offset - SECTOR {
        return Err(bad_text(format!(
            "{text_size} bytes do not fit the {size}-byte area"
        )));
    }
    let mut text = vec![0u8; text_size as usize];
    let (head, tail) = text.split_at_mut(first as usize);
    src.read_exact_at(text_at, head)?;
    src.read_exact_at(offset + SECTOR, tail)?;
    if lvm_crc(&text) != locn.checksum.get() {
        return Err(bad_text("checksum does not match".into()));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LVM's table-driven loop, bit by bit.
    fn slow_crc(data: &[u8]) -> u32 {
        let mut crc = INITIAL_CRC;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        crc
    }

    #[test]
    fn crc_is_lvms() {
        for data in [&b""[..], b"LVM2", &[0xFF; 600]] {
            assert_eq!(lvm_crc(data), slow_crc(data));
        }
    }

    #[test]
    fn no_label_is_an_error() {
        assert!(read_pv_label(&vec![0u8; 4096]).is_err());
        assert!(read_pv_label(&vec![0u8; 10]).is_err());
    }
}
