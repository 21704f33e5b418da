//! The OVF descriptor: what the package holds (References), its disks (DiskSection) and
//! the virtual machine they belong to (VirtualSystem: name, guest OS, firmware, the
//! controllers the disks hang on, NICs, CPUs and memory).
//!
//! XML is parsed by roxmltree, which refuses any DOCTYPE unless asked to allow one (so no
//! entity can be declared: no billion laughs, no external entities) and caps the node
//! count. The document is capped in size before it is parsed. Elements and attributes are
//! matched by namespace URI, never by prefix: `ovf:`, `rasd:` and `vmw:` are conventions.

use roxmltree::{Document, Node, ParsingOptions};
use serde::Serialize;

use super::error::{OvaError, OvaResult, Place};
use super::{names, units};
use crate::quote::excerpt;

/// Descriptors larger than this are refused unread (VMware's are a few KiB).
pub const MAX_DESCRIPTOR: u64 = 4 << 20;
/// XML nodes (elements, attributes' owners, text) at most.
const MAX_NODES: u32 = 200_000;

const OVF_NS: [&str; 2] = [
    "http://schemas.dmtf.org/ovf/envelope/1",
    "http://schemas.dmtf.org/ovf/envelope/2",
];
const RASD_NS: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
const SASD_NS: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData";
const EPASD_NS: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData";
const VSSD_NS: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
const VMW_NS: &str = "http://www.vmware.com/schema/ovf";

/// How a referenced file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// As is (`identity` or no attribute).
    Identity,
    /// RFC 1952 gzip; `ovf:size` is the compressed size. Readable front to back only.
    Gzip,
}

/// A References/File.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRef {
    pub id: String,
    /// Normalised, relative to the descriptor's folder.
    pub href: String,
    /// Bytes as stored (compressed size for gzip; total of all chunks when chunked).
    pub size: Option<u64>,
    pub compression: Compression,
    /// Stored as `<href>.000000000`, `<href>.000000001`, … of this many bytes each (the
    /// last may be shorter).
    pub chunk_size: Option<u64>,
}

/// A DiskSection/Disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskDef {
    pub disk_id: String,
    /// The File holding it; None for an empty disk to be created blank.
    pub file_ref: Option<String>,
    /// Guest-visible size in bytes (capacity × capacityAllocationUnits).
    pub capacity: u64,
    pub populated_size: Option<u64>,
    /// Format URI, e.g. `http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized`.
    pub format: Option<String>,
}

/// Firmware from `vmw:Config vmw:key="firmware"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Efi,
    /// No firmware key (or a value other than efi/bios, with a warning).
    Unknown,
}

/// OperatingSystemSection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatingSystem {
    /// CIM operating system number (`ovf:id`), e.g. 103.
    pub id: Option<u32>,
    /// VMware guest id (`vmw:osType`), e.g. `windows7Server64Guest`.
    pub os_type: Option<String>,
    pub description: Option<String>,
}

/// The bus a disk controller offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ControllerKind {
    Ide,
    Scsi,
    Sata,
    Nvme,
    /// Another ResourceType (e.g. a USB controller): its number.
    Other(u32),
}

/// A controller Item (ResourceType 5, 6, 20).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Controller {
    pub instance_id: String,
    pub kind: ControllerKind,
    /// `lsilogic`, `lsilogicsas`, `buslogic`, `VirtualSCSI`, `vmware.sata.ahci`, …
    pub subtype: Option<String>,
    /// `rasd:Address`: the bus number (IDE 0 or 1, SCSI bus).
    pub address: Option<u32>,
    pub element_name: Option<String>,
}

/// What a disk drive Item points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostResource {
    /// `ovf:/disk/<diskId>`
    Disk(String),
    /// `ovf:/file/<fileId>`
    File(String),
}

/// A disk drive Item (ResourceType 17).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskDrive {
    pub instance_id: String,
    pub host_resource: HostResource,
    /// InstanceID of the controller.
    pub parent: Option<String>,
    /// Unit number on the controller.
    pub address_on_parent: Option<u32>,
}

/// A NIC Item (ResourceType 10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nic {
    pub instance_id: String,
    /// `E1000`, `VmxNet3`, …
    pub subtype: Option<String>,
    /// Network name.
    pub connection: Option<String>,
    /// MAC address.
    pub mac: Option<String>,
    pub element_name: Option<String>,
}

/// VirtualHardwareSection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hardware {
    /// `vssd:VirtualSystemType`, e.g. `vmx-10`.
    pub system_type: Option<String>,
    pub firmware: Firmware,
    /// `bootOptions.efiSecureBootEnabled`, when given.
    pub secure_boot: Option<bool>,
    pub cpus: Option<u64>,
    pub cores_per_socket: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub controllers: Vec<Controller>,
    pub disk_drives: Vec<DiskDrive>,
    pub nics: Vec<Nic>,
    /// Every `vmw:Config` key and value, in document order.
    pub config: Vec<(String, String)>,
}

/// VirtualSystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualSystem {
    /// `ovf:id`.
    pub id: String,
    /// `Name`, when given.
    pub name: Option<String>,
    pub os: Option<OperatingSystem>,
    pub hardware: Hardware,
}

impl VirtualSystem {
    /// The name to show: `Name`, else `ovf:id`.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// Where a disk is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub controller: ControllerKind,
    pub subtype: Option<String>,
    pub controller_instance: String,
    /// The controller's bus number (`rasd:Address`).
    pub bus: Option<u32>,
    /// The disk's unit on it (`rasd:AddressOnParent`).
    pub unit: Option<u32>,
}

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope {
    pub files: Vec<FileRef>,
    pub disks: Vec<DiskDef>,
    /// NetworkSection/Network names.
    pub networks: Vec<String>,
    pub system: VirtualSystem,
    /// Anomalies tolerated.
    pub warnings: Vec<String>,
}

impl Envelope {
    pub fn file(&self, id: &str) -> Option<&FileRef> {
        self.files.iter().find(|f| f.id == id)
    }

    /// The controller and position of the disk drive that shows this disk to the guest:
    /// the drive whose HostResource names the disk (or its file), its Parent controller.
    /// None when no drive names it or its Parent names no controller.
    pub fn attachment(&self, disk: &DiskDef) -> Option<Attachment> {
        let hw = &self.system.hardware;
        let drive = hw.disk_drives.iter().find(|d| match &d.host_resource {
            HostResource::Disk(id) => *id == disk.disk_id,
            HostResource::File(id) => disk.file_ref.as_deref() == Some(id.as_str()),
        })?;
        let parent = drive.parent.as_deref()?;
        let c = hw.controllers.iter().find(|c| c.instance_id == parent)?;
        Some(Attachment {
            controller: c.kind.clone(),
            subtype: c.subtype.clone(),
            controller_instance: c.instance_id.clone(),
            bus: c.address,
            unit: drive.address_on_parent,
        })
    }
}

/// Parses a descriptor. `place` names it in errors (the package and the `.ovf` member).
pub fn parse(bytes: &[u8], place: &Place) -> OvaResult<Envelope> {
    if bytes.len() as u64 > MAX_DESCRIPTOR {
        return Err(too_large(place, bytes.len() as u64));
    }
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        OvaError::unsupported(
            place.clone(),
            format!(
                "the OVF descriptor is not UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| xml_error(place, text, e))?;
    Parser {
        place,
        text,
        warnings: Vec::new(),
    }
    .envelope(doc.root_element())
}

/// The error for a descriptor over `MAX_DESCRIPTOR`.
pub fn too_large(place: &Place, size: u64) -> OvaError {
    OvaError::limit(
        place.clone(),
        format!("the OVF descriptor is {size} bytes; at most {MAX_DESCRIPTOR} are read"),
    )
}

fn xml_error(place: &Place, text: &str, e: roxmltree::Error) -> OvaError {
    use roxmltree::Error as X;
    match e {
        X::DtdDetected => OvaError::refused(
            place.clone(),
            "the OVF descriptor has a DOCTYPE; DTDs and entity declarations are refused (entity expansion, external entities)",
        ),
        X::NodesLimitReached => OvaError::limit(
            place.clone(),
            format!("the OVF descriptor has more than {MAX_NODES} XML nodes"),
        ),
        e => {
            let pos = e.pos();
            OvaError::corrupt(
                place.clone(),
                "OVF descriptor",
                line_offset(text, pos.row, pos.col),
                format!("malformed XML: {e}"),
            )
        }
    }
}

/// Byte offset of a 1-based row and column (columns counted in characters).
fn line_offset(text: &str, row: u32, col: u32) -> u64 {
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i + 1 == row as usize {
            let within: usize = line
                .chars()
                .take(col.saturating_sub(1) as usize)
                .map(char::len_utf8)
                .sum();
            return (offset + within) as u64;
        }
        offset += line.len();
    }
    offset as u64
}

struct Parser<'p> {
    place: &'p Place,
    text: &'p str,
    warnings: Vec<String>,
}

fn is_ovf(node: &Node, name: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == name
        && node
            .tag_name()
            .namespace()
            .is_some_and(|ns| OVF_NS.contains(&ns))
}

fn is_in(node: &Node, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(ns)
}

fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(|n| n.is_element())
}

/// An `ovf:` attribute. Attributes without a prefix are accepted too: some writers leave
/// it off, and an unprefixed attribute cannot mean anything else here.
fn ovf_attr<'a>(node: &Node<'a, '_>, name: &str) -> Option<&'a str> {
    OVF_NS
        .iter()
        .find_map(|ns| node.attribute((*ns, name)))
        .or_else(|| node.attribute(name))
}

fn vmw_attr<'a>(node: &Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attribute((VMW_NS, name))
}

/// Text of an element, trimmed; None when empty.
fn text_of(node: &Node) -> Option<String> {
    let t: String = node
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

impl Parser<'_> {
    fn corrupt(&self, node: &Node, detail: impl Into<String>) -> OvaError {
        OvaError::corrupt(
            self.place.clone(),
            "OVF descriptor",
            node.range().start as u64,
            format!("line {}: {}", self.line(node), detail.into()),
        )
    }

    fn line(&self, node: &Node) -> usize {
        let start = node.range().start.min(self.text.len());
        self.text.as_bytes()[..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn required<'a>(&self, node: &Node<'a, '_>, name: &str) -> OvaResult<&'a str> {
        ovf_attr(node, name).ok_or_else(|| {
            self.corrupt(
                node,
                format!("<{}> has no ovf:{name}", node.tag_name().name()),
            )
        })
    }

    fn envelope(mut self, root: Node) -> OvaResult<Envelope> {
        if !is_ovf(&root, "Envelope") {
            return Err(self.corrupt(
                &root,
                format!(
                    "the root element is {} in namespace {}, not an OVF Envelope",
                    excerpt(root.tag_name().name()),
                    excerpt(root.tag_name().namespace().unwrap_or(""))
                ),
            ));
        }
        let mut files = Vec::new();
        let mut disks = Vec::new();
        let mut networks = Vec::new();
        let mut systems = Vec::new();
        for child in elements(root) {
            if is_ovf(&child, "References") {
                for f in elements(child).filter(|n| is_ovf(n, "File")) {
                    files.push(self.file(&f, &files)?);
                }
            } else if is_ovf(&child, "DiskSection") {
                for d in elements(child).filter(|n| is_ovf(n, "Disk")) {
                    disks.push(self.disk(&d, &disks)?);
                }
            } else if is_ovf(&child, "NetworkSection") {
                for n in elements(child).filter(|n| is_ovf(n, "Network")) {
                    if let Some(name) = ovf_attr(&n, "name") {
                        networks.push(name.to_string());
                    }
                }
            } else if is_ovf(&child, "VirtualSystem") {
                systems.push(child);
            } else if is_ovf(&child, "VirtualSystemCollection") {
                return Err(OvaError::unsupported(
                    self.place.clone(),
                    "the package holds a VirtualSystemCollection (several VMs); only single-VM packages are read",
                ));
            }
        }
        for d in &disks {
            if let Some(r) = &d.file_ref
                && !files.iter().any(|f: &FileRef| f.id == *r)
            {
                return Err(OvaError::corrupt(
                    self.place.clone(),
                    "OVF descriptor",
                    0,
                    format!(
                        "disk {} references file {r}, which References does not list",
                        excerpt(&d.disk_id),
                        r = excerpt(r)
                    ),
                ));
            }
        }
        let system = match systems.as_slice() {
            [one] => self.system(one)?,
            [] => return Err(self.corrupt(&root, "the Envelope has no VirtualSystem")),
            [_, second, ..] => {
                return Err(self.corrupt(second, "the Envelope has more than one VirtualSystem"));
            }
        };
        Ok(Envelope {
            files,
            disks,
            networks,
            system,
            warnings: self.warnings,
        })
    }

    fn file(&self, node: &Node, seen: &[FileRef]) -> OvaResult<FileRef> {
        let id = self.required(node, "id")?.to_string();
        let raw = self.required(node, "href")?;
        let href = names::href(raw).map_err(|why| {
            OvaError::refused(
                self.place.clone(),
                format!(
                    "line {}: File {id} has href {raw}, which {why}",
                    self.line(node),
                    id = excerpt(&id),
                    raw = excerpt(raw)
                ),
            )
        })?;
        if seen.iter().any(|f| f.id == id) {
            return Err(self.corrupt(
                node,
                format!("two Files have the id {id}", id = excerpt(&id)),
            ));
        }
        if let Some(other) = seen.iter().find(|f| f.href == href) {
            return Err(self.corrupt(
                node,
                format!(
                    "Files {} and {id} reference the same file {href}",
                    excerpt(&other.id),
                    id = excerpt(&id),
                    href = excerpt(&href)
                ),
            ));
        }
        let number = |attr: &str| -> OvaResult<Option<u64>> {
            ovf_attr(node, attr)
                .map(|v| {
                    units::decimal(v).map_err(|e| {
                        self.corrupt(
                            node,
                            format!("File {id} ovf:{attr}: {e}", id = excerpt(&id)),
                        )
                    })
                })
                .transpose()
        };
        let size = number("size")?;
        let chunk_size = number("chunkSize")?;
        if chunk_size == Some(0) {
            return Err(self.corrupt(
                node,
                format!("File {id} has ovf:chunkSize 0", id = excerpt(&id)),
            ));
        }
        let compression = match ovf_attr(node, "compression").map(str::trim) {
            None | Some("") | Some("identity") => Compression::Identity,
            Some("gzip") => Compression::Gzip,
            Some(other) => {
                return Err(OvaError::unsupported(
                    self.place.clone(),
                    format!(
                        "line {}: File {id} uses compression {other}; only gzip is understood",
                        self.line(node),
                        id = excerpt(&id),
                        other = excerpt(other)
                    ),
                ));
            }
        };
        Ok(FileRef {
            id,
            href,
            size,
            compression,
            chunk_size,
        })
    }

    fn disk(&self, node: &Node, seen: &[DiskDef]) -> OvaResult<DiskDef> {
        let disk_id = self.required(node, "diskId")?.to_string();
        if seen.iter().any(|d| d.disk_id == disk_id) {
            return Err(self.corrupt(
                node,
                format!(
                    "two Disks have the diskId {disk_id}",
                    disk_id = excerpt(&disk_id)
                ),
            ));
        }
        let capacity_text = self.required(node, "capacity")?;
        if capacity_text.trim_start().starts_with("${") {
            return Err(OvaError::unsupported(
                self.place.clone(),
                format!(
                    "line {}: disk {disk_id} takes its capacity from the property {capacity_text}; deployment properties are not evaluated",
                    self.line(node),
                    disk_id = excerpt(&disk_id)
                ),
            ));
        }
        let capacity = units::bytes(capacity_text, ovf_attr(node, "capacityAllocationUnits"))
            .map_err(|e| {
                self.corrupt(
                    node,
                    format!("disk {disk_id} capacity: {e}", disk_id = excerpt(&disk_id)),
                )
            })?;
        let populated_size = ovf_attr(node, "populatedSize")
            .map(|v| {
                units::decimal(v).map_err(|e| {
                    self.corrupt(
                        node,
                        format!(
                            "disk {disk_id} populatedSize: {e}",
                            disk_id = excerpt(&disk_id)
                        ),
                    )
                })
            })
            .transpose()?;
        Ok(DiskDef {
            disk_id,
            file_ref: ovf_attr(node, "fileRef").map(str::to_string),
            capacity,
            populated_size,
            format: ovf_attr(node, "format").map(str::to_string),
        })
    }

    fn system(&mut self, node: &Node) -> OvaResult<VirtualSystem> {
        let id = self.required(node, "id")?.to_string();
        let mut name = None;
        let mut os = None;
        let mut hardware = None;
        for child in elements(*node) {
            if is_ovf(&child, "Name") {
                name = text_of(&child);
            } else if is_ovf(&child, "OperatingSystemSection") {
                os = Some(self.os(&child)?);
            } else if is_ovf(&child, "VirtualHardwareSection") {
                if hardware.is_some() {
                    self.warnings.push(format!(
                        "line {}: a second VirtualHardwareSection is ignored",
                        self.line(&child)
                    ));
                    continue;
                }
                hardware = Some(self.hardware(&child)?);
            }
        }
        let hardware = hardware
            .ok_or_else(|| self.corrupt(node, "the VirtualSystem has no VirtualHardwareSection"))?;
        Ok(VirtualSystem {
            id,
            name,
            os,
            hardware,
        })
    }

    fn os(&self, node: &Node) -> OvaResult<OperatingSystem> {
        let id = ovf_attr(node, "id")
            .map(|v| {
                units::decimal(v)
                    .ok()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        self.corrupt(
                            node,
                            format!(
                                "OperatingSystemSection ovf:id {v} is not a number",
                                v = excerpt(v)
                            ),
                        )
                    })
            })
            .transpose()?;
        let description = elements(*node)
            .find(|n| is_ovf(n, "Description"))
            .and_then(|n| text_of(&n));
        Ok(OperatingSystem {
            id,
            os_type: vmw_attr(node, "osType").map(str::to_string),
            description,
        })
    }

    fn hardware(&mut self, node: &Node) -> OvaResult<Hardware> {
        let mut hw = Hardware {
            system_type: None,
            firmware: Firmware::Unknown,
            secure_boot: None,
            cpus: None,
            cores_per_socket: None,
            memory_bytes: None,
            controllers: Vec::new(),
            disk_drives: Vec::new(),
            nics: Vec::new(),
            config: Vec::new(),
        };
        let mut instance_ids: Vec<String> = Vec::new();
        for child in elements(*node) {
            if is_ovf(&child, "System") {
                hw.system_type = elements(child)
                    .find(|n| is_in(n, VSSD_NS, "VirtualSystemType"))
                    .and_then(|n| text_of(&n));
            } else if is_ovf(&child, "Item")
                || is_ovf(&child, "StorageItem")
                || is_ovf(&child, "EthernetPortItem")
            {
                let item = Item::read(&child);
                if let Some(id) = &item.instance_id {
                    if instance_ids.contains(id) {
                        return Err(self.corrupt(
                            &child,
                            format!("two Items have the InstanceID {id}", id = excerpt(id)),
                        ));
                    }
                    instance_ids.push(id.clone());
                }
                self.item(&child, item, &mut hw)?;
            } else if is_in(&child, VMW_NS, "Config") {
                let (Some(key), Some(value)) = (vmw_attr(&child, "key"), vmw_attr(&child, "value"))
                else {
                    continue;
                };
                self.config(&child, key, value, &mut hw);
            }
        }
        Ok(hw)
    }

    fn config(&mut self, node: &Node, key: &str, value: &str, hw: &mut Hardware) {
        match key {
            "firmware" => {
                hw.firmware =
                    match value {
                        "efi" => Firmware::Efi,
                        "bios" => Firmware::Bios,
                        other => {
                            self.warnings.push(format!(
                            "line {}: firmware {other} is neither efi nor bios; treated as unknown",
                            self.line(node), other = excerpt(other)));
                            Firmware::Unknown
                        }
                    }
            }
            "bootOptions.efiSecureBootEnabled" => {
                hw.secure_boot = match value.to_ascii_lowercase().as_str() {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                }
            }
            _ => {}
        }
        hw.config.push((key.to_string(), value.to_string()));
    }

    fn item(&mut self, node: &Node, item: Item, hw: &mut Hardware) -> OvaResult<()> {
        let Some(rtype) = item.resource_type.as_deref() else {
            self.warnings.push(format!(
                "line {}: an Item without ResourceType is ignored",
                self.line(node)
            ));
            return Ok(());
        };
        let rtype = units::decimal(rtype)
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                self.corrupt(
                    node,
                    format!(
                        "ResourceType {rtype} is not a number",
                        rtype = excerpt(rtype)
                    ),
                )
            })?;
        let number = |what: &str, v: &Option<String>| -> OvaResult<Option<u64>> {
            v.as_deref()
                .map(|t| units::decimal(t).map_err(|e| self.corrupt(node, format!("{what}: {e}"))))
                .transpose()
        };
        let small = |what: &str, v: &Option<String>| -> OvaResult<Option<u32>> {
            number(what, v)?
                .map(|n| {
                    u32::try_from(n)
                        .map_err(|_| self.corrupt(node, format!("{what} {n} is too large")))
                })
                .transpose()
        };
        let instance_id = || {
            item.instance_id.clone().ok_or_else(|| {
                self.corrupt(
                    node,
                    format!("an Item of ResourceType {rtype} has no InstanceID"),
                )
            })
        };
        match rtype {
            3 => {
                hw.cpus = number("VirtualQuantity", &item.virtual_quantity)?;
                hw.cores_per_socket = number("vmw:CoresPerSocket", &item.cores_per_socket)?;
            }
            4 => {
                let quantity = number("VirtualQuantity", &item.virtual_quantity)?;
                hw.memory_bytes = match (quantity, item.allocation_units.as_deref()) {
                    (Some(q), Some(u)) => {
                        let m = units::memory_multiplier(u)
                            .map_err(|e| self.corrupt(node, format!("memory: {e}")))?;
                        Some(q.checked_mul(m).ok_or_else(|| {
                            self.corrupt(node, "memory size does not fit 64 bits")
                        })?)
                    }
                    (Some(_), None) => {
                        self.warnings.push(format!(
                            "line {}: memory has no AllocationUnits; its size is not reported",
                            self.line(node)
                        ));
                        None
                    }
                    (None, _) => None,
                };
            }
            5 | 6 | 20 => {
                let kind = match rtype {
                    5 => ControllerKind::Ide,
                    6 => ControllerKind::Scsi,
                    _ if item
                        .subtype
                        .as_deref()
                        .is_some_and(|s| s.to_ascii_lowercase().contains("nvme")) =>
                    {
                        ControllerKind::Nvme
                    }
                    _ => ControllerKind::Sata,
                };
                hw.controllers.push(Controller {
                    instance_id: instance_id()?,
                    kind,
                    subtype: item.subtype.clone(),
                    address: small("Address", &item.address)?,
                    element_name: item.element_name.clone(),
                });
            }
            17 => {
                let Some(resource) = item.host_resource.as_deref() else {
                    self.warnings.push(format!(
                        "line {}: a disk drive without HostResource is ignored",
                        self.line(node)
                    ));
                    return Ok(());
                };
                let host_resource = parse_host_resource(resource).ok_or_else(|| {
                    self.corrupt(
                        node,
                        format!(
                            "HostResource {resource} is neither ovf:/disk/<id> nor ovf:/file/<id>",
                            resource = excerpt(resource)
                        ),
                    )
                })?;
                hw.disk_drives.push(DiskDrive {
                    instance_id: instance_id()?,
                    host_resource,
                    parent: item.parent.clone(),
                    address_on_parent: small("AddressOnParent", &item.address_on_parent)?,
                });
            }
            10 => hw.nics.push(Nic {
                instance_id: instance_id()?,
                subtype: item.subtype.clone(),
                connection: item.connection.clone(),
                mac: item.address.clone(),
                element_name: item.element_name.clone(),
            }),
            _ => {}
        }
        Ok(())
    }
}

/// `ovf:/disk/<id>` or `ovf:/file/<id>` (also the `ovf://` and bare `/disk/` spellings
/// older writers used).
fn parse_host_resource(text: &str) -> Option<HostResource> {
    let t = text.trim();
    let rest = t
        .strip_prefix("ovf://")
        .or_else(|| t.strip_prefix("ovf:/"))
        .or_else(|| t.strip_prefix('/'))?;
    if let Some(id) = rest.strip_prefix("disk/") {
        return (!id.is_empty()).then(|| HostResource::Disk(id.to_string()));
    }
    let id = rest.strip_prefix("file/")?;
    (!id.is_empty()).then(|| HostResource::File(id.to_string()))
}

/// The rasd (or sasd/epasd) fields of an Item this reader uses.
#[derive(Default)]
struct Item {
    resource_type: Option<String>,
    instance_id: Option<String>,
    subtype: Option<String>,
    element_name: Option<String>,
    host_resource: Option<String>,
    parent: Option<String>,
    address_on_parent: Option<String>,
    address: Option<String>,
    connection: Option<String>,
    virtual_quantity: Option<String>,
    allocation_units: Option<String>,
    cores_per_socket: Option<String>,
}

impl Item {
    fn read(node: &Node) -> Self {
        let mut item = Item::default();
        for child in elements(*node) {
            let ns = child.tag_name().namespace().unwrap_or("");
            if ns == VMW_NS && child.tag_name().name() == "CoresPerSocket" {
                item.cores_per_socket = text_of(&child);
                continue;
            }
            if ns != RASD_NS && ns != SASD_NS && ns != EPASD_NS {
                continue;
            }
            let slot = match child.tag_name().name() {
                "ResourceType" => &mut item.resource_type,
                "InstanceID" => &mut item.instance_id,
                "ResourceSubType" => &mut item.subtype,
                "ElementName" => &mut item.element_name,
                "HostResource" => &mut item.host_resource,
                "Parent" => &mut item.parent,
                "AddressOnParent" => &mut item.address_on_parent,
                "Address" => &mut item.address,
                "Connection" => &mut item.connection,
                "VirtualQuantity" => &mut item.virtual_quantity,
                "AllocationUnits" => &mut item.allocation_units,
                _ => continue,
            };
            // The first of repeated elements (several Connections, HostResources).
            if slot.is_none() {
                *slot = text_of(&child);
            }
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn place() -> Place {
        Place::member(Path::new("t.ova"), "t.ovf")
    }

    const MINIMAL: &str = r#"<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:o="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:r="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:v="http://www.vmware.com/schema/ovf">
  <References><File o:id="f1" o:href="./d.vmdk" o:size="10"/></References>
  <DiskSection><Disk o:diskId="d1" o:fileRef="f1" o:capacity="2" o:capacityAllocationUnits="byte * 2^20"/></DiskSection>
  <VirtualSystem o:id="vm">
    <VirtualHardwareSection>
      <Item><r:InstanceID>3</r:InstanceID><r:ResourceType>6</r:ResourceType><r:ResourceSubType>VirtualSCSI</r:ResourceSubType></Item>
      <Item><r:AddressOnParent>1</r:AddressOnParent><r:HostResource>ovf:/disk/d1</r:HostResource><r:InstanceID>4</r:InstanceID><r:Parent>3</r:Parent><r:ResourceType>17</r:ResourceType></Item>
      <v:Config v:key="firmware" v:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>"#;

    #[test]
    fn prefixes_do_not_matter_namespaces_do() {
        let env = parse(MINIMAL.as_bytes(), &place()).unwrap();
        assert_eq!(env.files[0].href, "d.vmdk");
        assert_eq!(env.disks[0].capacity, 2 << 20);
        assert_eq!(env.system.hardware.firmware, Firmware::Efi);
        let a = env.attachment(&env.disks[0]).unwrap();
        assert_eq!((a.controller, a.unit), (ControllerKind::Scsi, Some(1)));
        // Same names in a foreign namespace are not OVF.
        let foreign = MINIMAL.replace(
            "xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\"",
            "xmlns=\"urn:other\"",
        );
        assert!(matches!(
            parse(foreign.as_bytes(), &place()),
            Err(OvaError::Corrupt { .. })
        ));
    }

    #[test]
    fn dtds_and_entities_are_refused() {
        let bomb = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>{}",
            &MINIMAL[MINIMAL.find("<Envelope").unwrap()..]
        );
        assert!(matches!(
            parse(bomb.as_bytes(), &place()),
            Err(OvaError::Refused { .. })
        ));
        let undeclared = MINIMAL.replace("vm\">", "&xxe;\">");
        assert!(matches!(
            parse(undeclared.as_bytes(), &place()),
            Err(OvaError::Corrupt { .. })
        ));
    }

    #[test]
    fn hostile_hrefs_are_refused() {
        for bad in ["../x.vmdk", "/etc/shadow", "http://evil/x", "a\\b"] {
            let xml = MINIMAL.replace("./d.vmdk", bad);
            let e = parse(xml.as_bytes(), &place()).unwrap_err();
            assert!(matches!(e, OvaError::Refused { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("f1"), "{e}");
        }
    }

    #[test]
    fn host_resources() {
        assert_eq!(
            parse_host_resource("ovf:/disk/vmdisk1"),
            Some(HostResource::Disk("vmdisk1".into()))
        );
        assert_eq!(
            parse_host_resource("ovf:/file/file1"),
            Some(HostResource::File("file1".into()))
        );
        assert_eq!(parse_host_resource("ovf:/disk/"), None);
        assert_eq!(parse_host_resource("disk1"), None);
    }
}
