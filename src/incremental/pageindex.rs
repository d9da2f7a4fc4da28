//! The page index: what the last stored snapshot of each database looked like, page by page,
//! kept in `state_dir/pages.idx` so the next backup can store only the pages that changed
//! without reading (or decrypting) any backup.
//!
//! Per database: its page size and count, the whole file's BLAKE3, and 16 bytes of each page's
//! BLAKE3 chaining value (4 MiB per GiB of pages). The file names the backup it describes; a
//! backup builds on it only when that backup is the parent it finds, whole, on every
//! destination. It is replaced atomically, and only after the backup it describes is stored,
//! so it is never ahead of what is stored. A trailing BLAKE3 over the rest catches a file cut
//! short or damaged on disk: such an index is not used (a full backup is taken, and says why).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::state::StateDir;

pub const FILE: &str = "pages.idx";
const MAGIC: &[u8; 8] = b"LVPAGES1";

/// The first 16 bytes of a page's chaining value: enough to tell pages apart.
pub type PageHash = [u8; 16];

pub fn short(cv: &blake3::hazmat::ChainingValue) -> PageHash {
    cv[..16].try_into().expect("16 of 32 bytes")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageIndex {
    /// The backup these pages were stored in.
    pub backup_id: String,
    /// The full backup its chain starts from (itself, for a full backup).
    pub full_id: String,
    pub full_created: SystemTime,
    /// Incrementals since the full backup (0 for a full backup).
    pub depth: u32,
    pub databases: Vec<DbPages>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbPages {
    pub source: String,
    pub page_size: u32,
    pub page_count: u64,
    /// The whole database's BLAKE3 (hex).
    pub blake3: String,
    /// One per page; empty when the page size has no per-page values (512 bytes).
    pub hashes: Vec<PageHash>,
    /// The check these exact bytes passed, and their row counts (absent in older indexes): a
    /// database found unchanged needs neither again.
    pub passed: Option<Passed>,
}

/// What a database's check found, as the backup that stored it records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passed {
    pub check: crate::vocabulary::Check,
    pub row_counts: std::collections::BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    backup_id: String,
    full_id: String,
    full_created: u64,
    depth: u32,
    databases: Vec<DbHeader>,
}

#[derive(Serialize, Deserialize)]
struct DbHeader {
    source: String,
    page_size: u32,
    page_count: u64,
    blake3: String,
    hashes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passed: Option<Passed>,
}

impl PageIndex {
    pub fn database(&self, source: &str) -> Option<&DbPages> {
        self.databases.iter().find(|d| d.source == source)
    }

    /// The index in `state_dir`: `None` when there is none; an error when it cannot be read or
    /// is damaged (the caller takes a full backup and says why).
    pub fn load(state: &StateDir) -> Result<Option<PageIndex>> {
        let Some(body) = state.read_file(FILE)? else {
            return Ok(None);
        };
        decode(&body)
            .map(Some)
            .with_context(|| format!("the page index {}", state.path.join(FILE).display()))
    }

    pub fn save(&self, state: &StateDir) -> Result<()> {
        state.replace_file(FILE, &self.encode())
    }

    fn encode(&self) -> Vec<u8> {
        let header = Header {
            backup_id: self.backup_id.clone(),
            full_id: self.full_id.clone(),
            full_created: self
                .full_created
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            depth: self.depth,
            databases: self
                .databases
                .iter()
                .map(|d| DbHeader {
                    source: d.source.clone(),
                    page_size: d.page_size,
                    page_count: d.page_count,
                    blake3: d.blake3.clone(),
                    hashes: d.hashes.len() as u64,
                    passed: d.passed.clone(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&header).expect("an index header always serialises");
        let pages: usize = self.databases.iter().map(|d| d.hashes.len()).sum();
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + json.len() + pages * 16 + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        for d in &self.databases {
            for h in &d.hashes {
                out.extend_from_slice(h);
            }
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }
}

fn decode(body: &[u8]) -> Result<PageIndex> {
    if body.len() < MAGIC.len() + 4 + 32 || &body[..MAGIC.len()] != MAGIC {
        bail!("it is not a litevault page index");
    }
    let (content, sum) = body.split_at(body.len() - 32);
    if blake3::hash(content).as_bytes() != sum {
        bail!("it is damaged (its checksum does not match)");
    }
    let len = u32::from_le_bytes(content[8..12].try_into().expect("4 bytes")) as usize;
    let json = content
        .get(12..12 + len)
        .context("it is cut short (in its header)")?;
    let header: Header = serde_json::from_slice(json).context("its header is not valid")?;
    let mut rest = &content[12 + len..];
    let mut databases = Vec::new();
    for d in header.databases {
        let n = usize::try_from(d.hashes).context("too many pages")?;
        if rest.len() < n * 16 || (n != 0 && n as u64 != d.page_count) {
            bail!("its pages for {} do not add up", d.source);
        }
        let (mine, tail) = rest.split_at(n * 16);
        rest = tail;
        databases.push(DbPages {
            source: d.source,
            page_size: d.page_size,
            page_count: d.page_count,
            blake3: d.blake3,
            hashes: mine
                .chunks_exact(16)
                .map(|c| c.try_into().expect("16 bytes"))
                .collect(),
            passed: d.passed,
        });
    }
    if !rest.is_empty() {
        bail!("it has bytes after its last database");
    }
    Ok(PageIndex {
        backup_id: header.backup_id,
        full_id: header.full_id,
        full_created: UNIX_EPOCH + Duration::from_secs(header.full_created),
        depth: header.depth,
        databases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_reads_back_and_damage_is_noticed() {
        let index = PageIndex {
            backup_id: "20261127T030000Z-abcd".into(),
            full_id: "20261126T030000Z-abcd".into(),
            full_created: UNIX_EPOCH + Duration::from_secs(1_790_000_000),
            depth: 3,
            databases: vec![
                DbPages {
                    source: "a".into(),
                    page_size: 4096,
                    page_count: 3,
                    blake3: "00".repeat(32),
                    hashes: vec![[1; 16], [2; 16], [3; 16]],
                    passed: Some(Passed {
                        check: crate::vocabulary::Check::Integrity,
                        row_counts: [("t".to_string(), 7)].into(),
                    }),
                },
                DbPages {
                    source: "b".into(),
                    page_size: 512,
                    page_count: 9,
                    blake3: "11".repeat(32),
                    hashes: vec![],
                    passed: None,
                },
            ],
        };
        let body = index.encode();
        assert_eq!(decode(&body).unwrap(), index);
        for cut in [body.len() - 1, 20, 0] {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = body.clone();
        flipped[40] ^= 1;
        let err = decode(&flipped).unwrap_err();
        assert!(format!("{err:#}").contains("damaged"), "{err:#}");
    }
}
