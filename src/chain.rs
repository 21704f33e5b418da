//! Opening an image with its parents. A snapshot delta or a differencing disk is a layer
//! that names its parent (`Disk::parent`); this module finds each parent the way the
//! layer records it, opens it beneath the layer's folder, checks that it is the parent
//! the layer was made on (CID, unique id or DataWriteGuid; the size where the format
//! demands it), refuses cycles and chains longer than `MAX_LINKS`, and stacks the layers
//! into one `ChainDisk`.
//!
//! Finding a parent (CHAINS.md 1.6): each recorded path as written, beneath the layer's
//! folder (relative names; an absolute POSIX path only with --allow-outside-paths); then
//! the recorded name's last component in the layer's folder (absolute Windows and VMFS
//! paths, a folder that moved), then the same name in another case; each fallback with a
//! warning that says which file was used.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::detect::{self, Format};
use crate::disk::chain::MAX_LINKS;
use crate::disk::{
    ChainDisk, Disk, Folder, InputFile, LinkId, OpenError, OpenOptions, ParentHint, ParentLink,
};
use crate::error::{Error, ErrorKind, Result};
use crate::{raw, vhd, vhdx, vmdk};

/// Opens the image at `path` with every parent it names: the image itself when it has
/// none, otherwise the flattened chain.
pub fn open(path: &Path, options: &OpenOptions) -> Result<Box<dyn Disk>> {
    let (top, id) = open_top(path, options)?;
    if top.parent().is_none() {
        if options.parent.is_some() {
            return Err(not_a_layer(top.as_ref()));
        }
        return Ok(top);
    }
    Ok(Box::new(assemble(top, id, options)?))
}

/// Opens the image at `path` as a chain, of one layer when it names no parent.
pub fn open_chain(path: &Path, options: &OpenOptions) -> Result<ChainDisk> {
    let (top, id) = open_top(path, options)?;
    if top.parent().is_none() && options.parent.is_some() {
        return Err(not_a_layer(top.as_ref()));
    }
    assemble(top, id, options)
}

fn not_a_layer(disk: &dyn Disk) -> Error {
    Error::usage(
        Some("--parent"),
        format!(
            "{} names no parent (it is not a snapshot delta or a differencing disk)",
            disk.path().display()
        ),
    )
}

fn open_top(path: &Path, options: &OpenOptions) -> Result<(Box<dyn Disk>, FileId)> {
    let file = InputFile::open(path)?;
    let id = file_id(&file)?;
    let format = if options.raw_fallback {
        detect::identify(&file)?.unwrap_or(Format::Raw)
    } else {
        detect::detect(&file)?
    };
    Ok((open_format(file, format, options)?, id))
}

/// Opens an input file as the format its content says (never raw: a parent is an image).
pub fn open_file(file: InputFile, options: &OpenOptions) -> Result<Box<dyn Disk>> {
    let format = detect::detect(&file)?;
    open_format(file, format, options)
}

/// Opens an input file as `format`.
pub fn open_format(
    file: InputFile,
    format: Format,
    options: &OpenOptions,
) -> Result<Box<dyn Disk>> {
    Ok(match format {
        Format::Vhdx => Box::new(vhdx::read::VhdxDisk::open(file)?),
        Format::Vhd => Box::new(vhd::read::VhdDisk::open(file)?),
        Format::Raw => Box::new(raw::RawDisk::open(file)),
        vmdk => Box::new(vmdk::VmdkDisk::open(file, vmdk, options)?),
    })
}

/// A file's identity on its file system, to recognise a chain that comes back to a file
/// it already holds.
pub type FileId = (u64, u64);

pub fn file_id(file: &InputFile) -> Result<FileId> {
    let meta = file
        .file()
        .metadata()
        .map_err(|e| Error::input_io(file.path(), "the file's metadata", e))?;
    Ok((meta.dev(), meta.ino()))
}

/// Follows `top`'s parents down to a disk with none.
fn assemble(top: Box<dyn Disk>, top_id: FileId, options: &OpenOptions) -> Result<ChainDisk> {
    let mut warnings = Vec::new();
    let mut seen = vec![top_id];
    let mut layers = vec![top];
    loop {
        options.cancel.check()?;
        let child = layers.last().expect("at least the top");
        let Some(link) = child.parent().cloned() else {
            break;
        };
        if layers.len() >= MAX_LINKS {
            return Err(Error::chain_broken(
                child.path(),
                format!(
                    "the chain has more than {MAX_LINKS} links (the {MAX_LINKS}th, this one, still names a parent); vdconv reads at most {MAX_LINKS}"
                ),
            ));
        }
        let explicit = if layers.len() == 1 {
            options.parent.as_deref()
        } else {
            None
        };
        let file = find_parent(child.path(), &link, explicit, options, &mut warnings)
            .map_err(|e| with_link_rule(e, &link))?;
        let id = file_id(&file)?;
        if let Some(level) = seen.iter().position(|s| *s == id) {
            return Err(with_link_rule(
                Error::chain_broken(
                    child.path(),
                    format!(
                        "its parent {} is already link {} of the chain (counting from the top at 0): the chain is a cycle",
                        file.path().display(),
                        level
                    ),
                ),
                &link,
            ));
        }
        let parent = open_file(file, options)?;
        check_link(
            child.as_ref(),
            &link,
            parent.as_ref(),
            options.ignore_cid,
            &mut warnings,
        )
        .map_err(|e| with_link_rule(e, &link))?;
        seen.push(id);
        layers.push(parent);
    }
    Ok(ChainDisk::new(layers, warnings))
}

/// A link's errors name the link's rule (what `check` reports for the same fault), unless
/// they are not about the link (an I/O failure, an interruption).
fn with_link_rule(e: Error, link: &ParentLink) -> Error {
    match e.kind() {
        ErrorKind::MissingParent
        | ErrorKind::CidMismatch
        | ErrorKind::ChainBroken
        | ErrorKind::PathRefused => e.breaking(link.rule),
        _ => e,
    }
}

/// The format a link identity belongs to.
fn id_format(id: &LinkId) -> &'static str {
    match id {
        LinkId::VmdkCid(_) => "vmdk",
        LinkId::VhdUniqueId(_) => "vhd",
        LinkId::VhdxDataWrite(_) => "vhdx",
    }
}

/// Checks that `parent` is the parent `child` was made on: its format, its size where the
/// format demands the same, and its identity. A wrong identity is an error unless
/// `ignore_id`, when it is a warning.
pub fn check_link(
    child: &dyn Disk,
    link: &ParentLink,
    parent: &dyn Disk,
    ignore_id: bool,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let parent_id = parent.link_id();
    // Only a VMDK may lack an identity (a descriptor without a CID line).
    let wrong_format = match parent_id.as_ref().map(id_format) {
        Some(format) => format != link.format,
        None => link.format != "vmdk",
    };
    if wrong_format {
        return Err(Error::chain_broken(
            child.path(),
            format!(
                "its parent {} is not a {} image; a {} layer's parent is one",
                parent.path().display(),
                link.format.to_uppercase(),
                link.format.to_uppercase()
            ),
        ));
    }
    let (child_size, parent_size) = (child.virtual_size(), parent.virtual_size());
    if link.same_size && child_size != parent_size {
        return Err(Error::chain_broken(
            child.path(),
            format!(
                "it is {child_size} bytes but its parent {} is {parent_size} bytes; a snapshot delta and its parent have one size",
                parent.path().display()
            ),
        ));
    }
    if link.expected.is_empty() || parent_id.is_some_and(|id| link.expected.contains(&id)) {
        return Ok(());
    }
    let recorded = link
        .expected
        .iter()
        .map(LinkId::value)
        .collect::<Vec<_>>()
        .join(" or ");
    let found = parent_id.map_or_else(|| "none".to_string(), |id| id.to_string());
    let detail = format!(
        "{} {recorded} does not match its parent {} ({found})",
        link.expected_key,
        parent.path().display()
    );
    if ignore_id {
        warnings.push(format!(
            "{}: {detail}; read anyway (--ignore-cid): the parent may have changed since this link was made",
            child.path().display()
        ));
        return Ok(());
    }
    Err(Error::cid_mismatch(
        child.path(),
        format!(
            "{detail}: the parent changed after this link was made, or is another disk; pass --ignore-cid to read the chain anyway"
        ),
    ))
}

/// Where a layer's parent is: `explicit` when the user named it, otherwise what the layer
/// records (see the module's notes). Fallbacks add a warning.
pub fn find_parent(
    child: &Path,
    link: &ParentLink,
    explicit: Option<&Path>,
    options: &OpenOptions,
    warnings: &mut Vec<String>,
) -> Result<InputFile> {
    if let Some(path) = explicit {
        return InputFile::open(path).map_err(|e| {
            if e.kind() == ErrorKind::MissingFile {
                Error::missing_parent(
                    child,
                    format!(
                        "the parent named with --parent, {}, does not exist",
                        path.display()
                    ),
                )
            } else {
                e
            }
        });
    }
    if link.hints.is_empty() {
        return Err(Error::missing_parent(
            child,
            "records no parent file name; name the parent with --parent FILE",
        ));
    }
    let folder = Folder::of(child)?;
    let confine = !options.allow_outside_paths;
    // The first refusal is reported when nothing else is found.
    let mut refusal: Option<Error> = None;
    let mut outside: Option<String> = None;
    for hint in &link.hints {
        let name = Recorded::parse(&hint.path);
        if !name.absolute {
            match folder.open(Path::new(&name.unified), confine) {
                Ok(f) => return Ok(f),
                Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    refusal.get_or_insert(refuse(child, hint, e));
                }
            }
        } else if !name.windows {
            let path = Path::new(&name.unified);
            if options.allow_outside_paths {
                match InputFile::open(path) {
                    Ok(f) => return Ok(f),
                    Err(e) if e.kind() == ErrorKind::MissingFile => {}
                    Err(e) => {
                        refusal.get_or_insert(e);
                    }
                }
            } else if path.exists() {
                outside.get_or_insert_with(|| hint.path.clone());
            }
        }
    }
    for hint in &link.hints {
        let name = Recorded::parse(&hint.path);
        let Some(base) = name.base_name() else {
            continue;
        };
        if base != name.unified {
            if let Ok(f) = folder.open(Path::new(base), true) {
                warnings.push(format!(
                    "{}: its parent is recorded as \"{}\" ({}); using {}, the file of that name in its folder",
                    child.display(),
                    hint.path,
                    hint.key,
                    f.path().display()
                ));
                return Ok(f);
            }
        }
        if let Some(found) = other_case(folder.path(), base)
            && let Ok(f) = folder.open(Path::new(&found), true)
        {
            warnings.push(format!(
                "{}: its parent is recorded as \"{}\" ({}); using {}, whose name differs only in case",
                child.display(),
                hint.path,
                hint.key,
                f.path().display()
            ));
            return Ok(f);
        }
    }
    if let Some(e) = refusal {
        return Err(e);
    }
    if let Some(path) = outside {
        return Err(Error::refused(
            child,
            format!(
                "its parent is recorded as \"{path}\", outside its folder, and no file of that name is beside it; pass --allow-outside-paths to read it there, or name it with --parent"
            ),
        ));
    }
    let recorded = link
        .hints
        .iter()
        .map(|h| format!("\"{}\" ({})", h.path, h.key))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::missing_parent(
        child,
        format!(
            "its parent {recorded} is not in {}; copy it there or name it with --parent FILE",
            folder.path().display()
        ),
    ))
}

fn refuse(child: &Path, hint: &ParentHint, e: OpenError) -> Error {
    match e {
        OpenError::Escapes => Error::refused(
            child,
            format!(
                "its parent \"{}\" ({}) leads outside its folder (an absolute name, '..', or a link); pass --allow-outside-paths if you trust this image, or name the parent with --parent",
                hint.path, hint.key
            ),
        ),
        OpenError::NotRegular(what) => Error::refused(
            child,
            format!(
                "its parent \"{}\" ({}) is {what}, not a regular file (devices are never read)",
                hint.path, hint.key
            ),
        ),
        OpenError::Io(e) => Error::input_io(child, format!("its parent \"{}\"", hint.path), e),
    }
}

/// A recorded parent path, with Windows separators made POSIX.
struct Recorded {
    /// `\` turned into `/`, a `\\?\` prefix dropped.
    unified: String,
    /// It names a root: `/…`, `C:\…`, `\\server\…`, `\\?\…`.
    absolute: bool,
    /// It is a Windows path (a drive letter, a UNC or `\\?\` prefix, or `\` separators).
    windows: bool,
}

impl Recorded {
    fn parse(text: &str) -> Self {
        let text = text.trim();
        let stripped = text.strip_prefix(r"\\?\").unwrap_or(text);
        let drive = stripped.len() >= 2
            && stripped.as_bytes()[0].is_ascii_alphabetic()
            && stripped.as_bytes()[1] == b':';
        let windows = text.contains('\\') || drive;
        // `.` components say nothing ("./parent.vhd" is "parent.vhd").
        let slashed = stripped.replace('\\', "/");
        let unified = slashed
            .split('/')
            .enumerate()
            .filter(|(i, c)| *c != "." && (*i == 0 || !c.is_empty()))
            .map(|(_, c)| c)
            .collect::<Vec<_>>()
            .join("/");
        Recorded {
            absolute: drive || unified.starts_with('/') || text.starts_with(r"\\"),
            windows,
            unified,
        }
    }

    /// The last component (after a drive letter), if it is a plain name.
    fn base_name(&self) -> Option<&str> {
        let last = self.unified.rsplit('/').next()?;
        let last = match last.split_once(':') {
            Some((d, rest)) if d.len() == 1 => rest,
            _ => last,
        };
        (!last.is_empty() && last != "." && last != "..").then_some(last)
    }
}

/// A file in `dir` whose name equals `name` but for ASCII case. Looks at most at 10000
/// entries: a datastore folder holds far fewer.
fn other_case(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .take(10_000)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n != name && n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_paths_are_read_as_their_platform_writes_them() {
        let r = Recorded::parse(r"C:\VMs\Base Disk.vmdk");
        assert!(r.absolute && r.windows);
        assert_eq!(r.base_name(), Some("Base Disk.vmdk"));
        let r = Recorded::parse("/vmfs/volumes/501d996c-86c66169/sql/sql.vmdk");
        assert!(r.absolute && !r.windows);
        assert_eq!(r.base_name(), Some("sql.vmdk"));
        let r = Recorded::parse(r".\parent.vhdx");
        assert!(!r.absolute && r.windows);
        assert_eq!(r.unified, "parent.vhdx");
        assert_eq!(Recorded::parse("/a//b/./c").unified, "/a/b/c");
        let r = Recorded::parse(r"\\?\Volume{26A21BDA-A627-11D7-9931-806E6F6E6963}\p\x.vhdx");
        assert!(r.absolute);
        assert_eq!(r.base_name(), Some("x.vhdx"));
        let r = Recorded::parse(r"\\?\d:\path2\parent.vhdx");
        assert!(r.absolute && r.windows);
        assert_eq!(r.base_name(), Some("parent.vhdx"));
        let r = Recorded::parse("C:parent.vhd");
        assert_eq!(r.base_name(), Some("parent.vhd"));
        let r = Recorded::parse("base.vmdk");
        assert!(!r.absolute && !r.windows);
        assert_eq!(r.base_name(), Some("base.vmdk"));
        assert_eq!(Recorded::parse("..").base_name(), None);
    }
}
