//! `.prxplugin` archives: a gzip-compressed tar of a flat set of files
//! (`plugin.wasm`, `plugin.toml`, the README, LICENSE and CHANGELOG when
//! present) and `checksums.sha256` over them. `pack` makes the same bytes
//! from the same files (sorted entries, zero times and owners, no gzip
//! time or name); `install` verifies everything before it writes, then
//! swaps the plugin's directory in with one rename.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use prx_supervisor::manifest::Manifest;
use sha2::{Digest, Sha256};

const CHECKSUMS: &str = "checksums.sha256";
/// Files an archive may hold besides the checksums.
const OPTIONAL: &[&str] = &[
    "README.md",
    "LICENSE",
    "LICENSE.md",
    "LICENSE.txt",
    "CHANGELOG.md",
];
/// Largest archive, and largest content once unpacked: a Python component
/// is about 20 MB; this leaves room without letting a crafted archive
/// fill the disk.
const MAX_ARCHIVE: u64 = 256 << 20;
const MAX_UNPACKED: u64 = 512 << 20;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `checksums.sha256` of `files`: `<sha256>  <name>` lines, as
/// `sha256sum -c` reads them.
fn checksums(files: &BTreeMap<String, Vec<u8>>) -> String {
    files
        .iter()
        .map(|(name, bytes)| format!("{}  {name}\n", sha256_hex(bytes)))
        .collect()
}

/// The bytes of a `.prxplugin` holding `files` (name to content).
pub fn archive_bytes(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>> {
    let checksums = checksums(files);
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let entries = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .chain([(CHECKSUMS, checksums.as_bytes())]);
    for (name, bytes) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_path(name)?;
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append(&header, bytes)?;
    }
    Ok(tar.into_inner()?.finish()?)
}

pub fn pack(dir: &Path, output: Option<PathBuf>) -> Result<ExitCode> {
    let manifest_path = dir.join("plugin.toml");
    let manifest = Manifest::load(&manifest_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if manifest.plugin.wasm != "plugin.wasm" {
        bail!(
            "{}: [plugin].wasm is {:?}; a packed plugin keeps its component as plugin.wasm, so set wasm = \"plugin.wasm\" (prx-plugin build puts it there)",
            manifest_path.display(),
            manifest.plugin.wasm
        );
    }
    let wasm = std::fs::read(manifest.wasm_path(dir)).with_context(|| {
        format!(
            "cannot read {}; build the plugin first (prx-plugin build --release)",
            manifest.wasm_path(dir).display()
        )
    })?;
    let manifest_text = std::fs::read(&manifest_path)?;
    let report = crate::validate::validate_with(
        &wasm,
        &manifest_path,
        &String::from_utf8_lossy(&manifest_text),
    );
    if report.errors() > 0 {
        print!("{}", report.render());
        bail!("not packed: the plugin does not validate");
    }
    let mut files = BTreeMap::new();
    files.insert("plugin.wasm".to_owned(), wasm);
    files.insert("plugin.toml".to_owned(), manifest_text);
    for name in OPTIONAL {
        let path = dir.join(name);
        if path.is_file() {
            files.insert((*name).to_owned(), std::fs::read(&path)?);
        }
    }
    let bytes = archive_bytes(&files)?;
    let output = output.unwrap_or_else(|| {
        dir.join(format!(
            "{}-{}.prxplugin",
            manifest.plugin.name, manifest.plugin.version
        ))
    });
    write_atomically(&output, &bytes)?;
    println!(
        "packed {} {} into {} ({} bytes, sha256 {}): {}",
        manifest.plugin.name,
        manifest.plugin.version,
        output.display(),
        bytes.len(),
        sha256_hex(&bytes),
        files.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut staged = tempfile::NamedTempFile::new_in(dir)?;
    staged.write_all(bytes)?;
    staged.as_file().sync_all()?;
    staged
        .persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The files of an archive, every check passed: flat names from the
/// allowed set, regular files only, sizes capped, checksums matching,
/// manifest and component valid.
pub fn read_archive(file: &Path) -> Result<(Manifest, BTreeMap<String, Vec<u8>>)> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    if size > MAX_ARCHIVE {
        bail!(
            "{} is {size} bytes, more than the {MAX_ARCHIVE} a plugin archive may be",
            file.display()
        );
    }
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(file)?);
    let mut tar = tar::Archive::new(gz.take(MAX_UNPACKED + 1));
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut total = 0u64;
    for entry in tar.entries().context("not a .prxplugin (tar.gz) archive")? {
        let mut entry = entry.context("the archive is corrupt")?;
        let path = entry.path()?.into_owned();
        let shown = path.display().to_string();
        let mut components = path.components();
        let name = match (components.next(), components.next()) {
            (Some(Component::Normal(name)), None) => name.to_string_lossy().into_owned(),
            _ => bail!(
                "refused: the archive holds an unsafe path {shown:?} (only plain file names are allowed)"
            ),
        };
        if !entry.header().entry_type().is_file() {
            bail!(
                "refused: {shown:?} is a {:?} entry (only regular files are allowed)",
                entry.header().entry_type()
            );
        }
        if name != CHECKSUMS
            && name != "plugin.wasm"
            && name != "plugin.toml"
            && !OPTIONAL.contains(&name.as_str())
        {
            bail!(
                "refused: the archive holds {name:?}, which is not part of a plugin (plugin.wasm, plugin.toml, {}, {CHECKSUMS})",
                OPTIONAL.join(", ")
            );
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        total += bytes.len() as u64;
        if total > MAX_UNPACKED {
            bail!("refused: the archive unpacks to more than {MAX_UNPACKED} bytes");
        }
        if files.insert(name.clone(), bytes).is_some() {
            bail!("refused: the archive holds {name:?} twice");
        }
    }
    let listed = files
        .remove(CHECKSUMS)
        .context("refused: the archive has no checksums.sha256")?;
    let listed = String::from_utf8(listed).context("checksums.sha256 is not text")?;
    let mut sums = BTreeMap::new();
    for line in listed.lines().filter(|l| !l.trim().is_empty()) {
        let (sum, name) = line.split_once("  ").with_context(|| {
            format!("checksums.sha256: a line is not `<sha256>  <file>`: {line:?}")
        })?;
        sums.insert(name.to_owned(), sum.to_owned());
    }
    for (name, bytes) in &files {
        match sums.remove(name) {
            Some(sum) if sum == sha256_hex(bytes) => {}
            Some(_) => bail!(
                "refused: {name} does not match its checksum (the archive was altered or damaged)"
            ),
            None => bail!("refused: {name} is not listed in checksums.sha256"),
        }
    }
    if let Some(name) = sums.keys().next() {
        bail!("refused: checksums.sha256 lists {name}, which the archive does not hold");
    }
    let manifest_text = String::from_utf8(
        files
            .get("plugin.toml")
            .context("refused: the archive has no plugin.toml")?
            .clone(),
    )
    .context("plugin.toml is not UTF-8")?;
    let wasm = files
        .get("plugin.wasm")
        .context("refused: the archive has no plugin.wasm")?;
    let shown = PathBuf::from(format!("{}:plugin.toml", file.display()));
    let manifest = Manifest::parse(&shown, &manifest_text).map_err(|e| anyhow::anyhow!("{e}"))?;
    if manifest.plugin.wasm != "plugin.wasm" {
        bail!(
            "refused: plugin.toml names {:?} as its component; a packed plugin's is plugin.wasm",
            manifest.plugin.wasm
        );
    }
    let report = crate::validate::validate_with(wasm, &shown, &manifest_text);
    if report.errors() > 0 {
        print!("{}", report.render());
        bail!("refused: the plugin in the archive does not validate");
    }
    Ok((manifest, files))
}

pub fn install(file: &Path, plugins: &Path, state: &Path) -> Result<ExitCode> {
    let (manifest, files) = read_archive(file)?;
    std::fs::create_dir_all(plugins)
        .with_context(|| format!("cannot create {}", plugins.display()))?;
    let name = &manifest.plugin.name;
    let target = plugins.join(name);
    // Staged in a hidden directory the supervisor ignores, complete and
    // synced before it appears under its name.
    let staged = tempfile::Builder::new()
        .prefix(&format!(".{name}.install-"))
        .tempdir_in(plugins)?;
    let sums = checksums(&files);
    let kept = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .chain([(CHECKSUMS, sums.as_bytes())]);
    for (file_name, bytes) in kept {
        let mut out = std::fs::File::create(staged.path().join(file_name))?;
        out.write_all(bytes)?;
        out.sync_all()?;
    }
    std::fs::File::open(staged.path())?.sync_all()?;
    prepare(state, staged.path())?;
    let staged = staged.keep();
    let replaced = if target.exists() {
        swap_dirs(&staged, &target)?;
        // `staged` now holds the previous version.
        std::fs::remove_dir_all(&staged)?;
        true
    } else {
        std::fs::rename(&staged, &target)?;
        false
    };
    std::fs::File::open(plugins)?.sync_all()?;
    println!(
        "{} {name} {} in {}; a running supervisor {} it within moments (prx status shows it)",
        if replaced { "replaced" } else { "installed" },
        manifest.plugin.version,
        target.display(),
        if replaced { "reloads" } else { "loads" }
    );
    Ok(ExitCode::SUCCESS)
}

/// Has the running supervisor (if there is one at `state`) compile the
/// staged plugin and check that it starts.
fn prepare(state: &Path, staged: &Path) -> Result<()> {
    let socket = state.join("prx.sock");
    if !socket.exists() {
        println!(
            "no running supervisor at {} (pass its --state); the plugin is compiled when it loads",
            socket.display()
        );
        return Ok(());
    }
    let body = serde_json::json!({ "dir": staged.canonicalize()? }).to_string();
    let response = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(prx_supervisor::api::client::request(
            &socket,
            "POST",
            "/v1/prepare",
            Some(body),
        ))?;
    if response.status != 200 {
        let why = serde_json::from_str::<prx_supervisor::api::ErrorBody>(&response.body)
            .map(|e| e.error)
            .unwrap_or(response.body);
        bail!("not installed: the supervisor could not start the new version: {why}");
    }
    let prepared: prx_supervisor::api::Prepared = serde_json::from_str(&response.body)?;
    println!(
        "the running supervisor compiled {} {} and checked that it starts ({} ms)",
        prepared.plugin, prepared.version, prepared.compile_ms
    );
    Ok(())
}

/// Exchanges two directories in one step where the filesystem can; else
/// moves the old one aside and the new one in (a moment without it, which
/// the supervisor's debounce covers).
fn swap_dirs(new: &Path, current: &Path) -> Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    match renameat2(
        AT_FDCWD,
        new,
        AT_FDCWD,
        current,
        RenameFlags::RENAME_EXCHANGE,
    ) {
        Ok(()) => Ok(()),
        Err(
            nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS | nix::errno::Errno::EOPNOTSUPP,
        ) => {
            let aside = new.with_extension("old");
            std::fs::rename(current, &aside)?;
            std::fs::rename(new, current)?;
            std::fs::rename(&aside, new)?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot swap {} into place", current.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            ("plugin.wasm".to_owned(), b"\0asm\x0d\0\x01\0".to_vec()),
            ("plugin.toml".to_owned(), b"[plugin]\n".to_vec()),
        ])
    }

    #[test]
    fn the_same_files_make_the_same_bytes() {
        let a = archive_bytes(&files()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(a, archive_bytes(&files()).unwrap());
        let mut other = files();
        other.insert("README.md".into(), b"hi".to_vec());
        assert_ne!(a, archive_bytes(&other).unwrap());
    }

    /// A tar.gz with one raw entry (name written into the header as is).
    fn raw_archive(name: &[u8], kind: tar::EntryType, body: &[u8]) -> Vec<u8> {
        let gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(kind);
        if kind == tar::EntryType::Symlink {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        tar.append(&header, body).unwrap();
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unsafe_entries_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        for (name, kind, expected) in [
            (&b"../evil"[..], tar::EntryType::Regular, "unsafe path"),
            (b"/etc/cron.d/x", tar::EntryType::Regular, "unsafe path"),
            (b"sub/plugin.wasm", tar::EntryType::Regular, "unsafe path"),
            (
                b"plugin.wasm",
                tar::EntryType::Symlink,
                "only regular files",
            ),
            (
                b"install.sh",
                tar::EntryType::Regular,
                "not part of a plugin",
            ),
        ] {
            let path = dir.path().join("x.prxplugin");
            std::fs::write(&path, raw_archive(name, kind, b"x")).unwrap();
            let e = read_archive(&path).unwrap_err().to_string();
            assert!(
                e.contains(expected),
                "{:?}: {e}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn altered_and_unlisted_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.prxplugin");
        let mut bytes = archive_bytes(&files()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        // Valid archive but an invalid plugin: reaches validation.
        let e = read_archive(&path).unwrap_err().to_string();
        assert!(e.contains("plugin.toml"), "{e}");

        // Change a file after the checksums were made.
        let gz = flate2::read::GzDecoder::new(&bytes[..]);
        let mut tar = tar::Archive::new(gz);
        let mut entries: Vec<(String, Vec<u8>)> = tar
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                (name, body)
            })
            .collect();
        entries[1].1.push(b'!');
        let gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, body) in &entries {
            let mut header = tar::Header::new_ustar();
            header.set_path(name).unwrap();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append(&header, &body[..]).unwrap();
        }
        bytes = tar.into_inner().unwrap().finish().unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let e = read_archive(&path).unwrap_err().to_string();
        assert!(e.contains("does not match its checksum"), "{e}");
    }
}
