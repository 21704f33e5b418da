//! Names inside a package: tar member names and descriptor hrefs. Both come from the
//! package and are hostile until checked; both end up as relative, `/`-separated names
//! that cannot leave the package's folder, so that a name can be compared with another
//! (a manifest line, a reference) and, in an OVF folder, opened beneath the folder.

/// Normalises a tar member name: leading `./`, `.` components, repeated `/` and a
/// trailing `/` (directories) go. Refuses, with the reason, names that are empty,
/// absolute, or have a `..` component: extracting such a member would write outside
/// the destination, and a reader that resolves names must never follow them.
pub fn member_name(raw: &str) -> Result<String, String> {
    if raw.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if raw.starts_with('/') {
        return Err("is an absolute path".into());
    }
    normalise(raw)
}

/// Checks an OVF `ovf:href` the way the specification asks: relative to the descriptor,
/// `/`-separated. Refuses URLs (anything with a scheme, `http://…`, `file:…`), absolute
/// paths, `..`, and backslashes (a Windows separator would mean something else on each
/// side). Returns the normalised name.
pub fn href(raw: &str) -> Result<String, String> {
    if raw.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if raw.contains('\\') {
        return Err("contains a backslash; hrefs are '/'-separated".into());
    }
    if has_scheme(raw) {
        return Err("is a URL; only files inside the package are read".into());
    }
    if raw.starts_with('/') {
        return Err("is an absolute path".into());
    }
    normalise(raw)
}

/// `scheme:` per RFC 3986 (a letter, then letters, digits, `+`, `-`, `.`), before any `/`.
/// Also catches `C:disk.vmdk`, which is no relative path either.
fn has_scheme(raw: &str) -> bool {
    let Some(colon) = raw.find(':') else {
        return false;
    };
    let scheme = &raw[..colon];
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn normalise(raw: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("has a '..' component".into()),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("is empty".into());
    }
    Ok(parts.join("/"))
}

/// The folder part of a normalised name (`""` at the top).
pub fn parent(name: &str) -> &str {
    name.rfind('/').map_or("", |i| &name[..i])
}

/// The last component of a normalised name.
pub fn file_name(name: &str) -> &str {
    name.rfind('/').map_or(name, |i| &name[i + 1..])
}

/// `name` (normalised, relative) inside `dir` (normalised, or `""`).
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The name of chunk `index` of a file stored with `ovf:chunkSize`: the href and a
/// 9-digit decimal suffix, as VMware writes them.
pub fn chunk_name(name: &str, index: u32) -> String {
    format!("{name}.{index:09}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalised_and_confined() {
        assert_eq!(member_name("./vm.ovf").unwrap(), "vm.ovf");
        assert_eq!(member_name("././a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(member_name("a\\b").unwrap(), "a\\b");
        assert!(member_name("/etc/passwd").is_err());
        assert!(member_name("a/../../b").is_err());
        assert!(member_name("..").is_err());
        assert!(member_name("./").is_err());
        assert!(member_name("").is_err());
    }

    #[test]
    fn hrefs_refuse_urls_backslashes_and_escapes() {
        assert_eq!(href("disk1.vmdk").unwrap(), "disk1.vmdk");
        assert_eq!(href("./sub/disk.vmdk").unwrap(), "sub/disk.vmdk");
        assert_eq!(
            href("disk:1.vmdk").unwrap_err(),
            href("http://x/y").unwrap_err()
        );
        assert!(href("file:///etc/passwd").is_err());
        assert!(href("C:disk.vmdk").is_err());
        assert!(href("a\\..\\b").is_err());
        assert!(href("/abs").is_err());
        assert!(href("../x").is_err());
        assert_eq!(href("1:disk.vmdk").unwrap(), "1:disk.vmdk");
    }

    #[test]
    fn chunk_names_have_nine_digits() {
        assert_eq!(chunk_name("d.vmdk", 0), "d.vmdk.000000000");
        assert_eq!(chunk_name("d.vmdk", 12), "d.vmdk.000000012");
    }
}
