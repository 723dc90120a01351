//! Damaged components made from built ones, byte-exactly: one byte changed where the sections
//! are found by parsing with wasmparser, so each damage breaks exactly one thing and the rest of
//! the component still parses as it did.

use anyhow::{bail, Context, Result};
use wasmparser::{Parser, Payload};

/// Replaces the `end` that closes the first function body of the first core module with
/// `unreachable`: only validating the function bodies finds it.
pub fn function_body(component: &[u8]) -> Result<Vec<u8>> {
    for payload in Parser::new(0).parse_all(component) {
        if let Payload::CodeSectionEntry(body) = payload? {
            let end = usize::try_from(body.range().end)? - 1;
            if component[end] != 0x0b {
                bail!("the first function body does not end with `end`");
            }
            return Ok(patch(component, end, 0x00));
        }
    }
    bail!("no function body")
}

/// Changes the form byte of the first type of the first core type section (`0x60`, a function
/// type) to `0x5f`, which is no type form.
pub fn type_section(component: &[u8]) -> Result<Vec<u8>> {
    for payload in Parser::new(0).parse_all(component) {
        if let Payload::TypeSection(types) = payload? {
            let first = usize::try_from(types.range().start)? + leb128_len(types.count());
            if component.get(first) != Some(&0x60) {
                bail!("the first core type is not a plain function type");
            }
            return Ok(patch(component, first, 0x5f));
        }
    }
    bail!("no core type section")
}

/// Changes the first letter of the outer component's first export name to `-`: the name is no
/// longer kebab-case, so the component-level export section is invalid.
pub fn component_section(component: &[u8]) -> Result<Vec<u8>> {
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(exports) if depth == 0 => {
                let range = exports.range();
                let range = usize::try_from(range.start)?..usize::try_from(range.end)?;
                let name = exports
                    .into_iter()
                    .next()
                    .context("an empty export section")??
                    .name
                    .name;
                let section = &component[range.clone()];
                let at = section
                    .windows(name.len())
                    .position(|window| window == name.as_bytes())
                    .context("the export name is not in its section")?;
                return Ok(patch(component, range.start + at, b'-'));
            }
            _ => {}
        }
    }
    bail!("no component export section")
}

/// Replaces one file of a zip (`path`, which must exist), keeping the others.
pub fn replace_in_zip(zip: &[u8], path: &str, contents: &[u8]) -> Result<Vec<u8>> {
    rewrite_zip(zip, path, contents, true)
}

/// Adds a file to a zip (or replaces it), keeping the others: a package built with one more file
/// in its `pkg/`.
pub fn add_to_zip(zip: &[u8], path: &str, contents: &[u8]) -> Result<Vec<u8>> {
    rewrite_zip(zip, path, contents, false)
}

fn rewrite_zip(zip: &[u8], path: &str, contents: &[u8], must_exist: bool) -> Result<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))?;
    let mut files = Vec::new();
    let mut found = false;
    for index in 0..archive.len() {
        let mut file = archive.by_index(index)?;
        if file.is_dir() {
            continue;
        }
        let name = file.name()?.into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes)?;
        if name == path {
            found = true;
            bytes = contents.to_vec();
        }
        files.push((name, bytes));
    }
    if !found {
        if must_exist {
            bail!("the zip has no `{path}`");
        }
        files.push((path.to_owned(), contents.to_vec()));
    }
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect();
    crate::zip(&files)
}

/// One file of a zip.
pub fn file_in_zip(zip: &[u8], path: &str) -> Result<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))?;
    let mut file = archive.by_name(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

fn patch(bytes: &[u8], at: usize, byte: u8) -> Vec<u8> {
    let mut patched = bytes.to_vec();
    patched[at] = byte;
    patched
}

fn leb128_len(mut value: u32) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}
