//! Package and API archives: reading a zip under limits that keep a hostile archive harmless,
//! and writing a deterministic one.
//!
//! Reading scans the central directory itself before anything is inflated, because the zip
//! crate keeps only the last of two entries with one name and trusts declared sizes.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use thiserror::Error;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

/// Bounds applied to every archive the linker reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest archive accepted, in bytes as received.
    pub max_archive_bytes: u64,
    /// Most entries (files and directories) in one archive.
    pub max_entries: usize,
    /// Largest total of the entries' uncompressed sizes.
    pub max_total_bytes: u64,
    /// Largest uncompressed-to-compressed ratio of one entry, once the entry is larger than
    /// [`Limits::ratio_floor`].
    pub max_ratio: u64,
    /// Entries smaller than this (uncompressed) are not ratio-checked.
    pub ratio_floor: u64,
}

impl Default for Limits {
    /// Bounds that keep the linker process's guest memory within the figures in the README
    /// ("Bounds"): an archive of at most 128 MiB inflating to at most 128 MiB.
    fn default() -> Self {
        Limits {
            max_archive_bytes: 128 << 20,
            max_entries: 10_000,
            max_total_bytes: 128 << 20,
            max_ratio: 100,
            ratio_floor: 1 << 20,
        }
    }
}

/// An archive entry that breaks the archive rules, or an archive that cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArchiveError {
    /// The bytes are not a readable zip archive.
    #[error("`{archive}` is not a valid zip archive: {reason}")]
    NotAZip {
        /// The archive's name.
        archive: String,
        /// What the reader found wrong.
        reason: String,
    },
    /// The archive itself is larger than allowed.
    #[error("`{archive}` is {size} bytes, more than the {limit} bytes allowed")]
    ArchiveTooLarge {
        /// The archive's name.
        archive: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// An entry name leaves the archive root (`..`, an absolute path, a drive letter, ...).
    #[error("`{archive}` contains the unsafe entry name `{entry}`: entry names must be relative paths inside the archive")]
    UnsafePath {
        /// The archive's name.
        archive: String,
        /// The offending entry name.
        entry: String,
    },
    /// Two entries share one name.
    #[error("`{archive}` contains the entry `{entry}` more than once")]
    DuplicateEntry {
        /// The archive's name.
        archive: String,
        /// The repeated entry name.
        entry: String,
    },
    /// The archive has more entries than allowed.
    #[error("`{archive}` has {count} entries, more than the {limit} allowed")]
    TooManyEntries {
        /// The archive's name.
        archive: String,
        /// The number of entries.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The entries would inflate to more than allowed.
    #[error("`{archive}` would inflate to {size} bytes, more than the {limit} bytes allowed")]
    ContentsTooLarge {
        /// The archive's name.
        archive: String,
        /// The declared total uncompressed size.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// One entry compresses suspiciously well: the shape of a zip bomb.
    #[error("`{archive}` entry `{entry}` inflates {ratio} times its compressed size, more than the {limit} times allowed")]
    CompressionRatio {
        /// The archive's name.
        archive: String,
        /// The entry name.
        entry: String,
        /// Its uncompressed-to-compressed ratio.
        ratio: u64,
        /// The limit.
        limit: u64,
    },
    /// The entries together inflate suspiciously far beyond the archive's size: a zip bomb made
    /// of many small entries, or of entries that share compressed data.
    #[error("`{archive}` would inflate to {size} bytes, {ratio} times its own size, more than the {limit} times allowed")]
    ArchiveRatio {
        /// The archive's name.
        archive: String,
        /// The declared total uncompressed size.
        size: u64,
        /// Its ratio to the archive's size.
        ratio: u64,
        /// The limit.
        limit: u64,
    },
    /// One entry cannot be inflated, fails its checksum, or is not the size it declares.
    #[error("`{archive}` entry `{entry}` cannot be read: {reason}")]
    CorruptEntry {
        /// The archive's name.
        archive: String,
        /// The entry name.
        entry: String,
        /// What went wrong.
        reason: String,
    },
}

/// The files of one archive, by path; directories are implied by the paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// The name the archive is known by (a file name or a package id).
    pub name: String,
    /// File contents by entry path.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Archive {
    /// Reads and checks a zip archive.
    pub fn read(name: &str, bytes: &[u8], limits: &Limits) -> Result<Archive, ArchiveError> {
        let archive = name.to_owned();
        if bytes.len() as u64 > limits.max_archive_bytes {
            return Err(ArchiveError::ArchiveTooLarge {
                archive,
                size: bytes.len() as u64,
                limit: limits.max_archive_bytes,
            });
        }
        let directory = central_directory(bytes).map_err(|reason| ArchiveError::NotAZip {
            archive: archive.clone(),
            reason: reason.to_owned(),
        })?;
        check_directory(&archive, bytes.len() as u64, &directory, limits)?;

        let not_a_zip = |reason: String| ArchiveError::NotAZip {
            archive: archive.clone(),
            reason,
        };
        let mut zip =
            ZipArchive::new(Cursor::new(bytes)).map_err(|error| not_a_zip(error.to_string()))?;
        // The reader finds the central directory on its own: it must be the one checked above,
        // or a crafted archive could show the checks one directory and the reader another.
        let two_directories = || not_a_zip("it has two different central directories".into());
        if zip.len() != directory.len() {
            return Err(two_directories());
        }
        let mut files = BTreeMap::new();
        for (index, record) in directory.iter().enumerate() {
            let mut file = zip
                .by_index(index)
                .map_err(|error| not_a_zip(error.to_string()))?;
            if file.name_raw() != record.name.as_slice() || file.size() != record.uncompressed {
                return Err(two_directories());
            }
            let entry = String::from_utf8_lossy(file.name_raw()).into_owned();
            if file.is_dir() {
                continue;
            }
            let corrupt = |reason: String| ArchiveError::CorruptEntry {
                archive: archive.clone(),
                entry: entry.clone(),
                reason,
            };
            let declared = file.size();
            let mut contents = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
            (&mut file)
                .take(declared.saturating_add(1))
                .read_to_end(&mut contents)
                .map_err(|error| corrupt(error.to_string()))?;
            if contents.len() as u64 != declared {
                return Err(corrupt(format!(
                    "it inflates to {} bytes but declares {declared}",
                    contents.len()
                )));
            }
            files.insert(entry, contents);
        }
        Ok(Archive {
            name: archive,
            files,
        })
    }

    /// Writes the files as a deterministic zip: directory entries first, then files, each
    /// group sorted, with a fixed timestamp and mode, so equal contents give equal bytes.
    ///
    /// Deflated files that would make [`Archive::read`] refuse the zip as a bomb under the
    /// default [`Limits`] (a file that compresses more than [`Limits::max_ratio`] times) are
    /// written stored instead, every file, so that what the linker writes always reads back.
    pub fn write(&self, compression: Compression) -> Vec<u8> {
        let bytes = self.write_as(compression);
        if compression == Compression::Stored {
            return bytes;
        }
        let limits = Limits::default();
        let bomb = central_directory(&bytes).is_ok_and(|records| {
            matches!(
                check_directory(&self.name, bytes.len() as u64, &records, &limits),
                Err(ArchiveError::CompressionRatio { .. } | ArchiveError::ArchiveRatio { .. })
            )
        });
        if bomb {
            self.write_as(Compression::Stored)
        } else {
            bytes
        }
    }

    fn write_as(&self, compression: Compression) -> Vec<u8> {
        // Room for every file stored, with its headers and its directories' (at most one per
        // file): the buffer never doubles past it, which for a large package would cost the
        // node up to twice the package in guest memory.
        let room = self
            .files
            .iter()
            .map(|(path, contents)| contents.len() + 4 * path.len() + 256)
            .sum::<usize>()
            + 1024;
        let mut zip = ZipWriter::new(Cursor::new(Vec::with_capacity(room)));
        let timestamp = DateTime::from_date_and_time(2023, 6, 19, 0, 0, 0).unwrap_or_default();
        let base = SimpleFileOptions::default()
            .last_modified_time(timestamp)
            .unix_permissions(0o755);
        let directories: std::collections::BTreeSet<&str> = self
            .files
            .keys()
            .flat_map(|path| path.match_indices('/').map(move |(end, _)| &path[..end]))
            .collect();
        let stored = base.compression_method(CompressionMethod::Stored);
        // Writing into memory cannot fail, and names were checked when the files were read
        // or created by the linker, so errors here are bugs, not user input.
        for directory in directories {
            zip.add_directory(directory, base)
                .expect("in-memory zip directory entry");
        }
        for (path, contents) in &self.files {
            let options = match compression {
                Compression::Deflate { level } if worth_deflating(contents, level) => base
                    .compression_method(CompressionMethod::Deflated)
                    .compression_level(Some(i64::from(level))),
                _ => stored,
            };
            zip.start_file(path.as_str(), options)
                .expect("in-memory zip file entry");
            zip.write_all(contents).expect("in-memory zip write");
        }
        zip.finish().expect("in-memory zip finish").into_inner()
    }
}

/// How [`Archive::write`] stores file contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression: the fastest to write and to unpack.
    Stored,
    /// Deflate at a zlib level from 1 (fastest) to 9 (smallest).
    Deflate {
        /// The zlib level.
        level: u8,
    },
}

impl Default for Compression {
    /// Deflate at level 1: about a third of the time of level 6, for little more size on Wasm.
    fn default() -> Self {
        Compression::Deflate { level: 1 }
    }
}

/// Whether deflate at `level` shrinks `contents` by at least a tenth. Files under 256 KiB are
/// always deflated (cheap either way); larger ones are judged on sixteen samples spread through
/// them, so incompressible data (random blobs, compressed assets) is stored: deflating it costs
/// most of the time of writing a large package and makes it bigger.
fn worth_deflating(contents: &[u8], level: u8) -> bool {
    const SAMPLES: usize = 16;
    const SAMPLE: usize = 8 << 10;
    if contents.len() < 256 << 10 {
        return true;
    }
    let stride = (contents.len() - SAMPLE) / (SAMPLES - 1);
    let (mut raw, mut packed) = (0, 0);
    for index in 0..SAMPLES {
        let sample = &contents[index * stride..index * stride + SAMPLE];
        raw += sample.len();
        packed += deflated_len(sample, level);
    }
    packed * 10 <= raw * 9
}

fn deflated_len(bytes: &[u8], level: u8) -> usize {
    let mut encoder = flate2::write::DeflateEncoder::new(
        std::io::sink(),
        flate2::Compression::new(u32::from(level)),
    );
    // Writing into a sink cannot fail.
    let _ = encoder.write_all(bytes);
    let _ = encoder.try_finish();
    usize::try_from(encoder.total_out()).unwrap_or(usize::MAX)
}

/// One central-directory record: what the archive declares before anything is inflated.
struct Record {
    name: Vec<u8>,
    compressed: u64,
    uncompressed: u64,
}

/// Checks the declared entries against the limits. Besides each entry's ratio, the whole
/// archive's is bounded by its real length, so neither many entries each under the ratio floor
/// nor entries sharing (overlapping) compressed data inflate to more than the ratio allows.
fn check_directory(
    archive: &str,
    length: u64,
    records: &[Record],
    limits: &Limits,
) -> Result<(), ArchiveError> {
    if records.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            archive: archive.to_owned(),
            count: records.len(),
            limit: limits.max_entries,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut total: u64 = 0;
    for record in records {
        let entry = String::from_utf8_lossy(&record.name).into_owned();
        if !is_safe_path(&record.name) {
            return Err(ArchiveError::UnsafePath {
                archive: archive.to_owned(),
                entry,
            });
        }
        let key = entry.trim_end_matches('/').to_owned();
        if !seen.insert(key) {
            return Err(ArchiveError::DuplicateEntry {
                archive: archive.to_owned(),
                entry,
            });
        }
        total = total.saturating_add(record.uncompressed);
        if total > limits.max_total_bytes {
            return Err(ArchiveError::ContentsTooLarge {
                archive: archive.to_owned(),
                size: total,
                limit: limits.max_total_bytes,
            });
        }
        if record.uncompressed >= limits.ratio_floor {
            let ratio = record.uncompressed / record.compressed.max(1);
            if ratio > limits.max_ratio {
                return Err(ArchiveError::CompressionRatio {
                    archive: archive.to_owned(),
                    entry,
                    ratio,
                    limit: limits.max_ratio,
                });
            }
        }
    }
    let ratio = total / length.max(1);
    if total >= limits.ratio_floor && ratio > limits.max_ratio {
        return Err(ArchiveError::ArchiveRatio {
            archive: archive.to_owned(),
            size: total,
            ratio,
            limit: limits.max_ratio,
        });
    }
    Ok(())
}

/// Whether an entry name stays inside the archive root: relative, `/`-separated, valid UTF-8,
/// no `..` or `.` segments, no empty segments, no drive letter, no control characters.
pub fn is_safe_path(name: &[u8]) -> bool {
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    let name = name.strip_suffix('/').unwrap_or(name);
    if name.is_empty() || name.contains('\\') || name.chars().any(char::is_control) {
        return false;
    }
    let first = name.split('/').next().unwrap_or_default();
    if first.len() >= 2 && first.as_bytes()[1] == b':' && first.as_bytes()[0].is_ascii_alphabetic()
    {
        return false;
    }
    name.split('/')
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

const EOCD: u32 = 0x0605_4b50;
const EOCD64_LOCATOR: u32 = 0x0706_4b50;
const EOCD64: u32 = 0x0606_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;

fn u16_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u16::from_le_bytes(
        bytes.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u32::from_le_bytes(
        bytes.get(at..at + 4)?.try_into().ok()?,
    )))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Lists the central directory's records, following zip64 where the archive uses it.
fn central_directory(bytes: &[u8]) -> Result<Vec<Record>, &'static str> {
    const EOCD_LEN: usize = 22;
    let earliest = bytes.len().saturating_sub(EOCD_LEN + usize::from(u16::MAX));
    let end = (earliest..=bytes.len().saturating_sub(EOCD_LEN))
        .rev()
        .find(|&at| u32_at(bytes, at) == Some(u64::from(EOCD)))
        .ok_or("no end-of-central-directory record")?;
    let truncated = "the central directory is truncated";
    let mut count = u16_at(bytes, end + 10).ok_or(truncated)?;
    let mut offset = u32_at(bytes, end + 16).ok_or(truncated)?;
    if count == 0xFFFF || offset == 0xFFFF_FFFF {
        let locator = end.checked_sub(20).ok_or(truncated)?;
        if u32_at(bytes, locator) != Some(u64::from(EOCD64_LOCATOR)) {
            return Err("zip64 markers without a zip64 locator");
        }
        let record =
            usize::try_from(u64_at(bytes, locator + 8).ok_or(truncated)?).map_err(|_| truncated)?;
        if u32_at(bytes, record) != Some(u64::from(EOCD64)) {
            return Err("the zip64 end-of-central-directory record is missing");
        }
        count = u64_at(bytes, record + 32).ok_or(truncated)?;
        offset = u64_at(bytes, record + 48).ok_or(truncated)?;
    }
    let mut at = usize::try_from(offset).map_err(|_| truncated)?;
    // Each record takes at least 46 bytes, which bounds what a lying count can allocate.
    let mut records = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(bytes.len() / 46));
    for _ in 0..count {
        if u32_at(bytes, at) != Some(u64::from(CENTRAL_HEADER)) {
            return Err("a central directory record is missing or malformed");
        }
        let name_len =
            usize::try_from(u16_at(bytes, at + 28).ok_or(truncated)?).map_err(|_| truncated)?;
        let extra_len =
            usize::try_from(u16_at(bytes, at + 30).ok_or(truncated)?).map_err(|_| truncated)?;
        let comment_len =
            usize::try_from(u16_at(bytes, at + 32).ok_or(truncated)?).map_err(|_| truncated)?;
        let name = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or(truncated)?
            .to_vec();
        let mut compressed = u32_at(bytes, at + 20).ok_or(truncated)?;
        let mut uncompressed = u32_at(bytes, at + 24).ok_or(truncated)?;
        let extra = bytes
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or(truncated)?;
        if uncompressed == 0xFFFF_FFFF || compressed == 0xFFFF_FFFF {
            (uncompressed, compressed) = zip64_sizes(extra, uncompressed, compressed)
                .ok_or("a zip64 entry lacks its extended sizes")?;
        }
        records.push(Record {
            name,
            compressed,
            uncompressed,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(records)
}

/// Reads the zip64 extended-information extra field; sizes appear only where the header
/// holds the 0xFFFFFFFF marker, uncompressed first.
fn zip64_sizes(extra: &[u8], uncompressed: u64, compressed: u64) -> Option<(u64, u64)> {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let id = u16_at(extra, at)?;
        let len = usize::try_from(u16_at(extra, at + 2)?).ok()?;
        let body = extra.get(at + 4..at + 4 + len)?;
        if id == 0x0001 {
            let mut cursor = 0;
            let mut next = |marker: u64| {
                if marker == 0xFFFF_FFFF {
                    let value = u64_at(body, cursor);
                    cursor += 8;
                    value
                } else {
                    Some(marker)
                }
            };
            let uncompressed = next(uncompressed)?;
            let compressed = next(compressed)?;
            return Some((uncompressed, compressed));
        }
        at += 4 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Archive {
        Archive {
            name: "test.zip".into(),
            files: files
                .iter()
                .map(|(path, bytes)| ((*path).to_owned(), bytes.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let original = archive(&[("b/c.wasm", b"cc"), ("a.json", b"{}"), ("b/d/e", b"e")]);
        let first = original.write(Compression::default());
        let second = original.write(Compression::default());
        assert_eq!(first, second);
        let read = Archive::read("test.zip", &first, &Limits::default()).unwrap();
        assert_eq!(read.files, original.files);
        let stored = original.write(Compression::Stored);
        assert_eq!(
            Archive::read("test.zip", &stored, &Limits::default())
                .unwrap()
                .files,
            original.files
        );
    }

    #[test]
    fn writes_directories_first() {
        let bytes = archive(&[("z.txt", b"z"), ("a/b/c.txt", b"c")]).write(Compression::Stored);
        let names: Vec<String> = central_directory(&bytes)
            .unwrap()
            .into_iter()
            .map(|record| String::from_utf8(record.name).unwrap())
            .collect();
        assert_eq!(names, ["a/", "a/b/", "a/b/c.txt", "z.txt"]);
    }

    /// The compression method each entry was written with, from the central directory.
    fn methods(bytes: &[u8]) -> Vec<(String, u64)> {
        let mut at = bytes
            .windows(4)
            .position(|w| w == CENTRAL_HEADER.to_le_bytes())
            .unwrap();
        let mut methods = Vec::new();
        while u32_at(bytes, at) == Some(u64::from(CENTRAL_HEADER)) {
            let name_len = u16_at(bytes, at + 28).unwrap() as usize;
            let extra = u16_at(bytes, at + 30).unwrap() as usize;
            let comment = u16_at(bytes, at + 32).unwrap() as usize;
            let name = String::from_utf8_lossy(&bytes[at + 46..at + 46 + name_len]).into_owned();
            methods.push((name, u16_at(bytes, at + 10).unwrap()));
            at += 46 + name_len + extra + comment;
        }
        methods
    }

    #[test]
    fn incompressible_files_are_stored() {
        // A deterministic pseudo-random (xorshift) blob does not deflate; text does.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: Vec<u8> = (0..400_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let text = "fn main() { println!(\"hello\"); }\n".repeat(10_000);
        let bytes = archive(&[("noise.bin", &noise), ("text.rs", text.as_bytes())])
            .write(Compression::default());
        assert_eq!(
            methods(&bytes),
            [("noise.bin".to_owned(), 0), ("text.rs".to_owned(), 8)]
        );
        let read = Archive::read("test.zip", &bytes, &Limits::default()).unwrap();
        assert_eq!(read.files["noise.bin"], noise);
    }

    #[test]
    fn path_rules() {
        for good in ["a", "a/b.wasm", "ui/index.html", "dir/", "pkg:pub.zip"] {
            assert!(is_safe_path(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "C:/x",
            "c:x",
            "a\\b",
            "a\0b",
        ] {
            assert!(!is_safe_path(bad.as_bytes()), "{bad}");
        }
    }
}
