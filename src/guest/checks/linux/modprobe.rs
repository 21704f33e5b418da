//! modprobe.d and command-line blacklists: a module blacklisted (or `install`ed as a
//! no-op) is not loaded by udev, which is how Hyper-V drivers load (GUEST.md 1.3 step 4).

/// Where a module is disabled, as "file:line" text.
#[derive(Debug, Clone, Default)]
pub struct Blacklist {
    /// (normalised module name, where)
    entries: Vec<(String, String)>,
}

/// Module names compare with `-` and `_` equal (kmod does).
pub fn normalise(module: &str) -> String {
    module.trim().replace('-', "_")
}

impl Blacklist {
    /// Reads one modprobe.d file.
    pub fn add_conf(&mut self, path: &str, text: &str) {
        for (i, line) in text.lines().enumerate().take(10_000) {
            let mut words = line
                .split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace();
            let disabled = match words.next() {
                Some("blacklist") => words.next(),
                Some("install") => {
                    let module = words.next();
                    let command: Vec<&str> = words.collect();
                    // `install m /bin/true`, `/bin/false`, `/usr/bin/true`, `true`: a no-op.
                    let noop = command.first().is_some_and(|c| {
                        let base = c.rsplit('/').next().unwrap_or(c);
                        base == "true" || base == "false"
                    });
                    if noop { module } else { None }
                }
                _ => None,
            };
            if let Some(m) = disabled {
                self.entries
                    .push((normalise(m), format!("{path}:{}", i + 1)));
            }
        }
    }

    /// Reads `modprobe.blacklist=`, `module_blacklist=` and `rd.driver.blacklist=` from a
    /// kernel command line.
    pub fn add_cmdline(&mut self, source: &str, cmdline: &str) {
        for word in cmdline.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            if matches!(
                key,
                "modprobe.blacklist" | "module_blacklist" | "rd.driver.blacklist"
            ) {
                for m in value.split(',') {
                    self.entries
                        .push((normalise(m), format!("{source} ({key})")));
                }
            }
        }
    }

    /// Where `module` is disabled, if it is.
    pub fn find(&self, module: &str) -> Option<&str> {
        let m = normalise(module);
        self.entries
            .iter()
            .find(|(n, _)| *n == m)
            .map(|(_, w)| w.as_str())
    }
}

/// The modprobe.d directories, most specific first.
pub const MODPROBE_DIRS: [&str; 4] = [
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
];

/// True for initramfs entries that are modprobe configuration (kept to read blacklists).
pub fn is_initramfs_modprobe_conf(name: &str) -> bool {
    [
        "etc/modprobe.d/",
        "usr/lib/modprobe.d/",
        "lib/modprobe.d/",
        "etc/cmdline.d/",
    ]
    .iter()
    .any(|d| name.starts_with(d))
        || name == "etc/cmdline"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blacklist_forms() {
        let mut b = Blacklist::default();
        b.add_conf("/etc/modprobe.d/x.conf", "# c\nblacklist hv-vmbus\ninstall hv_storvsc /bin/true\ninstall hv_netvsc /sbin/modprobe --ignore-install hv_netvsc\n");
        b.add_cmdline(
            "cmdline",
            "ro modprobe.blacklist=floppy,udf rd.driver.blacklist=hv_utils",
        );
        assert_eq!(b.find("hv_vmbus"), Some("/etc/modprobe.d/x.conf:2"));
        assert!(b.find("hv-storvsc").is_some());
        assert!(b.find("hv_netvsc").is_none());
        assert!(b.find("udf").is_some() && b.find("hv_utils").is_some());
    }
}
