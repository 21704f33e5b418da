//! The format rules vdconv knows, one table shared by the readers (which refuse what breaks
//! a rule they depend on) and `check` (which reports every broken rule). Each rule has a
//! stable id, a severity and one line saying what it demands.

use serde::Serialize;

/// How binding a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The format's specification demands it: readers may refuse or misread the file.
    Must,
    /// The specification recommends it, or a major reader demands what the specification
    /// leaves open: some readers refuse the file.
    Should,
    /// What Windows, Hyper-V or VMware themselves write; other writers differ harmlessly.
    Habit,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Must => "must",
            Severity::Should => "should",
            Severity::Habit => "habit",
        }
    }
}

/// One rule of a format or a platform.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    /// What the rule demands, in one line.
    pub summary: &'static str,
}

macro_rules! rules {
    ($($name:ident = $id:literal, $sev:ident, $summary:literal;)*) => {
        $(
            #[doc = $summary]
            pub const $name: Rule = Rule { id: $id, severity: Severity::$sev, summary: $summary };
        )*
        /// Every rule, in the order of the table.
        pub const ALL: &[&Rule] = &[$(&$name),*];
    };
}

rules! {
    // VHD (Microsoft VHD specification 1.0).
    VHD_TRUNCATED = "vhd-truncated", Must, "The file holds at least a 512-byte footer.";
    VHD_FOOTER_COOKIE = "vhd-footer-cookie", Must, "The footer starts with 'conectix'.";
    VHD_FOOTER_CHECKSUM = "vhd-footer-checksum", Must, "The footer checksum is the one's complement of its byte sum.";
    VHD_FOOTER_FEATURES = "vhd-footer-features", Should, "The footer's features field sets the reserved bit 0x2.";
    VHD_FOOTER_VERSION = "vhd-footer-version", Must, "The footer's format version is 0x00010000.";
    VHD_FOOTER_RESERVED = "vhd-footer-reserved", Should, "The footer's reserved bytes are zero.";
    VHD_FOOTER_COPY_DIFFERS = "vhd-footer-copy-differs", Should, "A dynamic disk's footer copy at offset 0 equals its footer.";
    VHD_SIZE_UNALIGNED = "vhd-size-unaligned", Must, "The current size is a multiple of 512.";
    VHD_SIZE_ZERO = "vhd-size-zero", Must, "The current size is not zero.";
    VHD_SIZE_LIMIT = "vhd-size-limit", Should, "The current size is at most 2040 GiB (Azure and Hyper-V accept more).";
    VHD_DISK_TYPE = "vhd-disk-type", Must, "The disk type is 2 (fixed), 3 (dynamic) or 4 (differencing).";
    VHD_DATA_OFFSET = "vhd-data-offset", Must, "A fixed disk's data offset is all ones; a dynamic disk's points at its header before the footer.";
    VHD_FIXED_FILE_SIZE = "vhd-fixed-file-size", Must, "A fixed disk's file is its current size plus the 512-byte footer.";
    VHD_HEADER_COOKIE = "vhd-header-cookie", Must, "The dynamic header starts with 'cxsparse'.";
    VHD_HEADER_CHECKSUM = "vhd-header-checksum", Must, "The dynamic header checksum is the one's complement of its byte sum.";
    VHD_HEADER_VERSION = "vhd-header-version", Must, "The dynamic header version is 0x00010000.";
    VHD_HEADER_DATA_OFFSET = "vhd-header-data-offset", Should, "The dynamic header's data offset is all ones.";
    VHD_BLOCK_SIZE = "vhd-block-size", Must, "The block size is a power of two from 512 bytes to 256 MiB.";
    VHD_BAT_ENTRY_COUNT = "vhd-bat-entry-count", Should, "The BAT has exactly ceil(size / block size) entries (Azure refuses one more).";
    VHD_BAT_TOO_SMALL = "vhd-bat-too-small", Must, "The BAT has an entry for every block of the disk.";
    VHD_BAT_BEYOND_EOF = "vhd-bat-beyond-eof", Must, "The BAT lies inside the file, before the footer.";
    VHD_BLOCK_BEYOND_EOF = "vhd-block-beyond-eof", Must, "Every allocated block (bitmap and data) lies after the header and BAT and inside the file.";
    VHD_BLOCK_OVERLAP = "vhd-block-overlap", Must, "Allocated blocks overlap neither each other nor the header, BAT and footers.";
    VHD_BLOCK_UNALIGNED = "vhd-block-unaligned", Habit, "Block data starts on a 4 KiB boundary, as Windows lays it out.";
    VHD_PARENT_LOCATOR = "vhd-parent-locator", Must, "A differencing disk's parent locators lie inside the file and name a parent.";

    // VHDX (MS-VHDX).
    VHDX_TRUNCATED = "vhdx-truncated", Must, "The file holds at least the 1 MiB of headers and region tables.";
    VHDX_FILE_SIGNATURE = "vhdx-file-signature", Must, "The file starts with 'vhdxfile'.";
    VHDX_HEADER_SIGNATURE = "vhdx-header-signature", Must, "Each header starts with 'head'.";
    VHDX_HEADER_CHECKSUM = "vhdx-header-checksum", Must, "Each header's CRC-32C matches its 4 KiB.";
    VHDX_NO_VALID_HEADER = "vhdx-no-valid-header", Must, "At least one header is valid.";
    VHDX_HEADER_VERSION = "vhdx-header-version", Must, "The header version is 1.";
    VHDX_HEADER_LOG_VERSION = "vhdx-header-log-version", Must, "The header's log version is 0.";
    VHDX_HEADER_RESERVED = "vhdx-header-reserved", Must, "The header's reserved bytes are zero.";
    VHDX_LOG_PLACEMENT = "vhdx-log-placement", Must, "The log is whole MiB, after the first MiB.";
    VHDX_LOG_PENDING = "vhdx-log-pending", Should, "The log holds nothing to replay (LogGuid zero); readers that do not replay refuse the file.";
    VHDX_LOG_CORRUPT = "vhdx-log-corrupt", Must, "A pending log has a valid active sequence to replay.";
    VHDX_REGION_SIGNATURE = "vhdx-region-signature", Must, "Each region table starts with 'regi'.";
    VHDX_REGION_CHECKSUM = "vhdx-region-checksum", Must, "Each region table's CRC-32C matches its 64 KiB.";
    VHDX_REGION_COPIES_DIFFER = "vhdx-region-copies-differ", Must, "The two region tables are identical.";
    VHDX_REGION_RESERVED = "vhdx-region-reserved", Must, "Region table reserved fields and flag bits are zero.";
    VHDX_REGION_COUNT = "vhdx-region-count", Must, "A region table has at most 2047 entries.";
    VHDX_REGION_UNKNOWN_REQUIRED = "vhdx-region-unknown-required", Must, "No region a reader does not know is marked Required.";
    VHDX_REGION_NOT_REQUIRED = "vhdx-region-not-required", Habit, "The BAT and metadata regions set Required, as Windows writes them (MS-VHDX asks it only of unknown regions).";
    VHDX_REGION_ALIGNMENT = "vhdx-region-alignment", Must, "Regions are whole MiB, after the first MiB.";
    VHDX_REGION_BEYOND_EOF = "vhdx-region-beyond-eof", Must, "Regions lie inside the file.";
    VHDX_REGION_OVERLAP = "vhdx-region-overlap", Must, "Regions overlap neither each other, the headers nor the log.";
    VHDX_REGION_MISSING = "vhdx-region-missing", Must, "The BAT and metadata regions are both present.";
    VHDX_METADATA_SIGNATURE = "vhdx-metadata-signature", Must, "The metadata table starts with 'metadata'.";
    VHDX_METADATA_RESERVED = "vhdx-metadata-reserved", Must, "Metadata table reserved fields and flag bits are zero.";
    VHDX_METADATA_COUNT = "vhdx-metadata-count", Must, "The metadata table has at most 2047 entries.";
    VHDX_METADATA_OFFSET = "vhdx-metadata-offset", Must, "Metadata items lie after the 64 KiB table.";
    VHDX_METADATA_BEYOND_REGION = "vhdx-metadata-beyond-region", Must, "Metadata items lie inside the metadata region.";
    VHDX_METADATA_OVERLAP = "vhdx-metadata-overlap", Must, "Metadata items do not overlap.";
    VHDX_METADATA_UNKNOWN_REQUIRED = "vhdx-metadata-unknown-required", Must, "No metadata item a reader does not know is marked IsRequired.";
    VHDX_METADATA_FLAGS = "vhdx-metadata-flags", Must, "Known items carry their IsRequired and IsVirtualDisk flags and not IsUser.";
    VHDX_METADATA_LENGTH = "vhdx-metadata-length", Must, "Known items have their specified length.";
    VHDX_METADATA_MISSING = "vhdx-metadata-missing", Must, "The five required metadata items are present.";
    VHDX_BLOCK_SIZE = "vhdx-block-size", Must, "The block size is a power of two from 1 MiB to 256 MiB.";
    VHDX_FILE_PARAMETERS_RESERVED = "vhdx-file-parameters-reserved", Must, "File parameter flags set no reserved bits.";
    VHDX_LOGICAL_SECTOR_SIZE = "vhdx-logical-sector-size", Must, "The logical sector size is 512 or 4096.";
    VHDX_PHYSICAL_SECTOR_SIZE = "vhdx-physical-sector-size", Must, "The physical sector size is 512 or 4096.";
    VHDX_VIRTUAL_SIZE = "vhdx-virtual-size", Must, "The virtual size is not zero, at most 64 TiB and a multiple of the logical sector.";
    VHDX_PARENT_LOCATOR = "vhdx-parent-locator", Must, "A differencing image has a parent locator naming its parent and its linkage.";
    VHDX_BAT_REGION_TOO_SMALL = "vhdx-bat-region-too-small", Must, "The BAT region holds every entry the disk needs.";
    VHDX_BAT_RESERVED = "vhdx-bat-reserved", Must, "BAT entries set no reserved bits (3-19).";
    VHDX_BAT_STATE = "vhdx-bat-state", Must, "Payload entries use states 0-3 or 6, and 7 only with a parent.";
    VHDX_BAT_BITMAP_STATE = "vhdx-bat-bitmap-state", Must, "Sector bitmap entries are not present unless the image has a parent.";
    VHDX_BAT_OFFSET_NOT_ZERO = "vhdx-bat-offset-not-zero", Should, "Entries in state 0 (not present) or 2 (zero) carry file offset 0 (Hyper-V fails otherwise).";
    VHDX_FIXED_BLOCK_NOT_PRESENT = "vhdx-fixed-block-not-present", Should, "A fixed image (LeaveBlockAllocated) has every payload block fully present.";
    VHDX_BLOCK_BEYOND_EOF = "vhdx-block-beyond-eof", Must, "Every present block's used bytes lie after the first MiB and inside the file.";
    VHDX_BLOCK_TAIL_BEYOND_EOF = "vhdx-block-tail-beyond-eof", Should, "The last present block lies wholly inside the file, even past the disk's end (Windows refuses otherwise).";
    VHDX_BLOCK_OVERLAP = "vhdx-block-overlap", Must, "Present blocks (and trimmed blocks that keep an offset) overlap neither each other nor the headers, log, BAT and metadata.";

    // VMDK (VMware Virtual Disk Format 5.0).
    VMDK_DESCRIPTOR = "vmdk-descriptor", Must, "The descriptor parses and its extent lines are well formed.";
    VMDK_HEADER = "vmdk-header", Must, "The sparse header has the KDMV magic, a known version and flags, and sane sizes.";
    VMDK_TRUNCATED = "vmdk-truncated", Must, "The file holds every structure its header and tables place in it: grain tables, grains, flat data.";
    VMDK_EXTENT = "vmdk-extent", Must, "Every extent file a descriptor names exists in its folder and is a regular file of a kind vdconv reads.";
    VMDK_GD_BEYOND_EOF = "vmdk-gd-beyond-eof", Must, "The grain directory lies inside the file and has a sane size.";
    VMDK_GTE_IN_METADATA = "vmdk-gte-in-metadata", Must, "No grain table entry points inside the header and tables (overHead).";
    VMDK_GRAIN_OVERLAP = "vmdk-grain-overlap", Must, "No two grains share file space.";
    VMDK_REDUNDANT_DIFFERS = "vmdk-redundant-differs", Should, "The redundant grain directory and tables equal the primary ones.";
    VMDK_STREAM = "vmdk-stream", Must, "streamOptimized grains carry their own LBA and inflate to a grain; the footer matches the header.";
    VMDK_PARENT = "vmdk-parent", Must, "A delta's parent exists, is the same size, and its CID equals the delta's parentCID.";

    // Azure (a fixed VHD page blob).
    AZURE_FORMAT = "azure-format", Must, "Azure takes only VHD files.";
    AZURE_COOKIE = "azure-cookie", Must, "The last 512 bytes are a VHD footer.";
    AZURE_FOOTER_CHECKSUM = "azure-footer-checksum", Must, "The footer checksum is valid.";
    AZURE_FIXED = "azure-fixed", Must, "The disk type is fixed (2).";
    AZURE_WHOLE_MIB = "azure-whole-mib", Must, "The virtual size is a whole number of MiB.";
    AZURE_FILE_SIZE = "azure-file-size", Must, "The file is the virtual size plus 512 bytes.";
    AZURE_SIZE_BOUNDS = "azure-size-bounds", Must, "The virtual size is from 20 MiB to 32767 GiB.";
}

/// The rule with `id`, if there is one.
pub fn by_id(id: &str) -> Option<&'static Rule> {
    ALL.iter().copied().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_kebab_case() {
        let mut ids: Vec<&str> = ALL.iter().map(|r| r.id).collect();
        assert!(ids.iter().all(|id| {
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }));
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate rule ids");
        assert_eq!(by_id("vhdx-bat-state"), Some(&VHDX_BAT_STATE));
    }
}
