//! Which kernel boots by default and with what command line, read offline from the
//! bootloader's files (GUEST.md 1.6): BLS snippets with grubenv, GRUB 2's grub.cfg,
//! /etc/default/grub. Nothing is executed, so this is a best reading, said as such.

use super::super::view::View;

/// One way the bootloader can start a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub title: String,
    /// BLS file stem or grub `--id`.
    pub id: Option<String>,
    /// The kernel image path as written (`/vmlinuz-6.1.0-18-amd64`).
    pub linux: String,
    pub initrd: Option<String>,
    pub options: String,
    /// File and line the entry comes from.
    pub source: (String, usize),
}

impl BootEntry {
    /// The kernel version from the image name (`vmlinuz-<ver>`, `kernel-<ver>`).
    pub fn version(&self) -> Option<String> {
        let name = self.linux.rsplit('/').next()?;
        ["vmlinuz-", "vmlinux-", "kernel-", "bzImage-"]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .map(str::to_string)
    }
}

/// What the bootloader files say.
#[derive(Debug, Clone, Default)]
pub struct Bootloader {
    pub entries: Vec<BootEntry>,
    /// Index into `entries` of the default, when the files say which.
    pub default: Option<usize>,
    /// Why the default is what it is (for the report).
    pub default_reason: String,
    /// `key=value` of grubenv.
    pub grubenv: Vec<(String, String)>,
    /// Command-line fragments outside the entries: (file, line, text), e.g.
    /// GRUB_CMDLINE_LINUX of /etc/default/grub, grubenv kernelopts.
    pub cmdline_sources: Vec<(String, usize, String)>,
}

const GRUB_CFGS: [&str; 4] = [
    "/boot/grub2/grub.cfg",
    "/boot/grub/grub.cfg",
    "/boot/efi/EFI/BOOT/grub.cfg",
    "/boot/grub2/grub.conf",
];

pub fn read(view: &View<'_>) -> Bootloader {
    let mut b = Bootloader::default();
    for path in [
        "/boot/grub2/grubenv",
        "/boot/grub/grubenv",
        "/boot/efi/EFI/redhat/grubenv",
    ] {
        if let Some(text) = view.text(path) {
            for (i, line) in text.lines().enumerate() {
                if line.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = line.split_once('=') {
                    b.grubenv.push((k.to_string(), v.to_string()));
                    if k == "kernelopts" {
                        b.cmdline_sources.push((path.into(), i + 1, v.to_string()));
                    }
                }
            }
            break;
        }
    }
    let default_grub = view.text("/etc/default/grub").unwrap_or_default();
    let grub_default = shell_var(&default_grub, "GRUB_DEFAULT").map(|(_, v)| v);
    for var in ["GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"] {
        if let Some((line, v)) = shell_var(&default_grub, var) {
            b.cmdline_sources
                .push(("/etc/default/grub".into(), line, v));
        }
    }
    if let Some(text) = view.text("/etc/kernel/cmdline") {
        b.cmdline_sources
            .push(("/etc/kernel/cmdline".into(), 1, text.trim().to_string()));
    }

    let bls = read_bls(view, &b.grubenv);
    let grub_cfg = GRUB_CFGS
        .iter()
        .find_map(|p| view.text(p).map(|t| (p.to_string(), t)));
    let mut set_default: Option<String> = None;
    let mut uses_bls = false;
    if let Some((path, text)) = &grub_cfg {
        let parsed = parse_grub_cfg(path, text);
        set_default = parsed.1;
        uses_bls = parsed.2;
        if !uses_bls || bls.is_empty() {
            b.entries = parsed.0;
        }
    }
    if b.entries.is_empty() {
        b.entries = bls;
        uses_bls = true;
    }
    if b.entries.is_empty() {
        return b;
    }
    let saved = b
        .grubenv
        .iter()
        .find(|(k, _)| k == "saved_entry")
        .map(|(_, v)| v.clone());
    // grub.cfg's `set default` wins (it is what GRUB reads); "saved" / ${saved_entry}
    // mean grubenv's saved_entry; else /etc/default/grub's GRUB_DEFAULT as written.
    let wanted = match set_default.or(grub_default) {
        Some(d) if d == "saved" || d.contains("saved_entry") => saved.clone(),
        Some(d) => Some(d),
        None if uses_bls => saved.clone(),
        None => None,
    };
    let (default, reason) = match wanted.as_deref() {
        Some(w) => match pick(&b.entries, w) {
            Some(i) => (i, format!("default entry {w:?}")),
            None => (
                0,
                format!("default {w:?} matches no entry; the first entry is used"),
            ),
        },
        None => (0, "no default set; the first entry is used".into()),
    };
    b.default = Some(default);
    b.default_reason = reason;
    b
}

/// Finds an entry by index, id, title, or a submenu path's last part (`a>b`).
fn pick(entries: &[BootEntry], wanted: &str) -> Option<usize> {
    let wanted = wanted.rsplit('>').next().unwrap_or(wanted).trim();
    if let Ok(n) = wanted.parse::<usize>() {
        return (n < entries.len()).then_some(n);
    }
    entries
        .iter()
        .position(|e| e.id.as_deref() == Some(wanted) || e.title == wanted)
}

/// `NAME=value` in a shell-style file (last assignment wins), quotes removed.
pub fn shell_var(text: &str, name: &str) -> Option<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim().trim_start_matches("export ");
            let v = l.strip_prefix(name)?.strip_prefix('=')?;
            Some((i + 1, unquote(v)))
        })
        .last()
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(v)
        .to_string()
}

/// BLS snippets, newest version first (GRUB's blscfg order), `$var` expanded from grubenv.
fn read_bls(view: &View<'_>, grubenv: &[(String, String)]) -> Vec<BootEntry> {
    let mut entries = Vec::new();
    for dir in ["/boot/loader/entries", "/boot/efi/loader/entries"] {
        for (path, text) in view.texts_in(dir, ".conf") {
            let mut e = BootEntry {
                title: String::new(),
                id: path
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.strip_suffix(".conf"))
                    .map(str::to_string),
                linux: String::new(),
                initrd: None,
                options: String::new(),
                source: (path.clone(), 1),
            };
            for line in text.lines() {
                let line = line.trim();
                let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                let v = v.trim();
                match k {
                    "title" => e.title = v.to_string(),
                    "linux" => e.linux = v.to_string(),
                    "initrd" if e.initrd.is_none() => e.initrd = Some(v.to_string()),
                    "options" => e.options = expand(v, grubenv),
                    _ => {}
                }
            }
            if !e.linux.is_empty() {
                entries.push(e);
            }
        }
    }
    entries.sort_by(|a, b| {
        compare_versions(
            &b.version().unwrap_or_default(),
            &a.version().unwrap_or_default(),
        )
    });
    entries
}

fn expand(options: &str, grubenv: &[(String, String)]) -> String {
    options
        .split_whitespace()
        .map(|w| match w.strip_prefix('$') {
            Some(var) => grubenv
                .iter()
                .find(|(k, _)| k == var.trim_matches(|c| c == '{' || c == '}'))
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            None => w.to_string(),
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Entries of a grub.cfg (menuentry blocks, also inside submenus, in order), its
/// `set default=` value, and whether it loads BLS snippets (`blscfg`).
fn parse_grub_cfg(path: &str, text: &str) -> (Vec<BootEntry>, Option<String>, bool) {
    let mut entries = Vec::new();
    let mut default = None;
    let mut blscfg = false;
    let mut current: Option<BootEntry> = None;
    for (i, raw) in text.lines().enumerate().take(100_000) {
        let line = raw.trim();
        if line == "blscfg" || line.starts_with("blscfg ") {
            blscfg = true;
        }
        if let Some(v) = line.strip_prefix("set default=") {
            default = Some(unquote(v));
        } else if line.starts_with("menuentry ") {
            if let Some(e) = current.take() {
                entries.push(e);
            }
            current = Some(BootEntry {
                title: first_quoted(line).unwrap_or_default(),
                id: line
                    .split_once("--id")
                    .or_else(|| line.split_once("$menuentry_id_option"))
                    .and_then(|(_, rest)| first_quoted(rest)),
                linux: String::new(),
                initrd: None,
                options: String::new(),
                source: (path.to_string(), i + 1),
            });
        } else if let Some(e) = current.as_mut() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("linux" | "linux16" | "linuxefi" | "kernel") => {
                    e.linux = words.next().unwrap_or_default().to_string();
                    e.options = words.collect::<Vec<_>>().join(" ");
                }
                Some("initrd" | "initrd16" | "initrdefi") => {
                    e.initrd = words.next().map(str::to_string)
                }
                Some("}") => {
                    if let Some(e) = current.take() {
                        entries.push(e);
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(e) = current.take() {
        entries.push(e);
    }
    entries.retain(|e| !e.linux.is_empty());
    (entries, default, blscfg)
}

fn first_quoted(s: &str) -> Option<String> {
    let start = s.find(['\'', '"'])?;
    let quote = s[start..].chars().next()?;
    let rest = &s[start + 1..];
    rest.find(quote).map(|end| rest[..end].to_string())
}

/// Orders kernel versions the way `sort -V` roughly does: numeric runs as numbers.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut num = String::new();
        let mut txt = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !txt.is_empty() {
                    out.push((0, std::mem::take(&mut txt)));
                }
                num.push(c);
            } else {
                if !num.is_empty() {
                    out.push((num.parse().unwrap_or(u64::MAX), String::new()));
                    num.clear();
                }
                txt.push(c);
            }
        }
        if !num.is_empty() {
            out.push((num.parse().unwrap_or(u64::MAX), String::new()));
        }
        if !txt.is_empty() {
            out.push((0, txt));
        }
        out
    }
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_entries_and_default() {
        let cfg = "set default=\"1\"\nmenuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-x' {\n  linux /boot/vmlinuz-6.1.0-18-amd64 root=UUID=abc ro quiet\n  initrd /boot/initrd.img-6.1.0-18-amd64\n}\nsubmenu 'Advanced' {\n menuentry 'Debian, 6.1.0-17' --id 'old' {\n  linux /boot/vmlinuz-6.1.0-17-amd64 root=/dev/sda1 ro\n }\n}\n";
        let (entries, default, bls) = parse_grub_cfg("/boot/grub/grub.cfg", cfg);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].version().as_deref(), Some("6.1.0-18-amd64"));
        assert_eq!(entries[0].id.as_deref(), Some("gnulinux-simple-x"));
        assert_eq!(entries[1].options, "root=/dev/sda1 ro");
        assert_eq!(default.as_deref(), Some("1"));
        assert!(!bls);
        assert_eq!(pick(&entries, "Advanced>old"), Some(1));
    }

    #[test]
    fn versions_order_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(
            compare_versions("5.14.0-362.8.1.el9_3.x86_64", "5.14.0-70.13.1.el9_0.x86_64"),
            Greater
        );
        assert_eq!(compare_versions("6.1.0-9-amd64", "6.1.0-18-amd64"), Less);
    }
}
